"""The test API server's pure functions: selectors, the patch formats,
structural pruning, protobuf bodies (no server needed)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kubeapi"))

from kubeapi_util import (APIError, FieldSelector, LabelSelector, json_merge_patch, json_patch,  # noqa: E402
                          pb_decode_object, prune_and_validate, strategic_merge_patch)


@pytest.mark.parametrize("sel,labels,ok", [
    ("a=b", {"a": "b"}, True), ("a=b", {"a": "c"}, False), ("a==b", {"a": "b"}, True),
    ("a!=b", {}, True), ("a!=b", {"a": "b"}, False), ("a in (b, c)", {"a": "c"}, True),
    ("a in (b,c)", {}, False), ("a notin (b,c)", {}, True), ("a notin (b,c)", {"a": "b"}, False),
    ("a", {"a": ""}, True), ("!a", {"a": ""}, False), ("!a", {}, True),
    ("a=b,c", {"a": "b"}, False), ("a=b,c", {"a": "b", "c": "x"}, True),
    ("example.com/x=1,!other", {"example.com/x": "1"}, True), ("", {"z": "1"}, True),
    ("a=", {"a": ""}, True),
])
def test_label_selectors(sel, labels, ok):
    assert LabelSelector.parse(sel).matches(labels) is ok


@pytest.mark.parametrize("bad", ["a in b", "a in (b", "a=b c", "-bad-=x", "a=b,,=c"])
def test_bad_label_selectors_are_400(bad):
    with pytest.raises(APIError) as e:
        LabelSelector.parse(bad)
    assert e.value.code == 400


def test_field_selectors():
    obj = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "hostNetwork": False}}
    fs = FieldSelector.parse("spec.nodeName=n1,metadata.name!=q,spec.hostNetwork=false",
                             {"spec.nodeName", "metadata.name", "spec.hostNetwork"})
    assert fs.matches(obj)
    assert not FieldSelector.parse("spec.nodeName==n2", None).matches(obj)
    assert FieldSelector.parse("spec.nodeName=", None).matches({"spec": {}})
    with pytest.raises(APIError) as e:
        FieldSelector.parse("spec.other=x", {"metadata.name"})
    assert e.value.code == 400 and "field label not supported" in e.value.message


def test_merge_patch_rfc7386():
    assert json_merge_patch({"a": "b", "c": {"d": "e", "f": "g"}}, {"a": "z", "c": {"f": None}}) == \
        {"a": "z", "c": {"d": "e"}}
    assert json_merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert json_merge_patch({"a": 1}, {"b": {"c": None}}) == {"a": 1, "b": {}}


def test_json_patch_rfc6902():
    doc = {"a": {"b": [1, 2]}, "x~y": 1, "p/q": 2}
    out = json_patch(doc, [{"op": "add", "path": "/a/b/-", "value": 3},
                           {"op": "add", "path": "/a/b/0", "value": 0},
                           {"op": "remove", "path": "/x~0y"},
                           {"op": "replace", "path": "/p~1q", "value": 5},
                           {"op": "copy", "from": "/a/b", "path": "/c"},
                           {"op": "move", "from": "/c", "path": "/d"},
                           {"op": "test", "path": "/d/3", "value": 3}])
    assert out == {"a": {"b": [0, 1, 2, 3]}, "p/q": 5, "d": [0, 1, 2, 3]}
    assert doc["a"]["b"] == [1, 2], "the input is not modified"
    with pytest.raises(APIError) as e:
        json_patch(doc, [{"op": "test", "path": "/a/b/0", "value": 9}])
    assert e.value.code == 422
    with pytest.raises(APIError):
        json_patch(doc, [{"op": "remove", "path": "/nope"}])


def test_strategic_merge_patch_as_kubectl_apply_sends_it():
    live = {"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
            "spec": {"template": {"spec": {
                "containers": [{"name": "one", "image": "i:1", "env": [{"name": "A", "value": "1"},
                                                                        {"name": "B", "value": "2"}],
                                "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                               {"name": "two", "image": "j:1"}],
                "tolerations": [{"operator": "Exists"}]}}}}
    patch = {"metadata": {"labels": {"b": None}, "finalizers": ["y"]},
             "spec": {"template": {"spec": {
                 "$setElementOrder/containers": [{"name": "two"}, {"name": "one"}],
                 "containers": [{"name": "one", "image": "i:2",
                                 "$setElementOrder/env": [{"name": "B"}],
                                 "env": [{"name": "A", "$patch": "delete"}, {"name": "B", "value": "3"}]},
                                {"name": "three", "image": "k:1"}],
                 "tolerations": [{"key": "k", "operator": "Equal", "value": "v"}]}}}}
    out = strategic_merge_patch(live, patch)
    spec = out["spec"]["template"]["spec"]
    assert out["metadata"] == {"labels": {"a": "1"}, "finalizers": ["x", "y"]}
    assert [c["name"] for c in spec["containers"]] == ["two", "one", "three"]
    one = spec["containers"][1]
    assert one["image"] == "i:2" and one["env"] == [{"name": "B", "value": "3"}]
    assert one["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert spec["tolerations"] == [{"key": "k", "operator": "Equal", "value": "v"}], "no merge key: replaced"
    assert not any(k.startswith("$") for k in spec) and "$setElementOrder/env" not in one
    assert live["metadata"]["labels"] == {"a": "1", "b": "2"}, "the input is not modified"
    # $patch: replace on a map, $retainKeys, $deleteFromPrimitiveList
    out = strategic_merge_patch({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"x": 1}},
                                          "sel": {"a": 1, "b": 2}}, "metadata": {"finalizers": ["x", "y"]}},
                                {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                                          "sel": {"$patch": "replace", "c": 3}},
                                 "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}})
    assert out == {"spec": {"strategy": {"type": "Recreate"}, "sel": {"c": 3}}, "metadata": {"finalizers": ["y"]}}


def test_pruning_and_types():
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"n": {"type": "integer"}, "m": {
            "type": "object", "additionalProperties": {"type": "string"}},
            "e": {"type": "string", "enum": ["a", "b"]}, "free": {"type": "object",
                                                             "x-kubernetes-preserve-unknown-fields": True}},
            "required": ["n"]}}}
    errors, pruned = [], []
    out = prune_and_validate({"apiVersion": "v", "kind": "K", "metadata": {"name": "x"},
                              "spec": {"n": 1, "m": {"k": "v"}, "junk": 1, "free": {"any": {"thing": 1}}},
                              "status": {"s": 1}}, schema, "", errors, top=True, pruned=pruned)
    assert errors == []
    assert out == {"apiVersion": "v", "kind": "K", "metadata": {"name": "x"},
                   "spec": {"n": 1, "m": {"k": "v"}, "free": {"any": {"thing": 1}}}}
    assert sorted(pruned) == ["spec.junk", "status"]
    errors = []
    prune_and_validate({"spec": {"n": "1", "m": {"k": 2}, "e": "c"}}, schema, "", errors, top=True)
    fields = sorted(f for _, f, _ in errors)
    assert fields == ["spec.e", "spec.m.k", "spec.n"]
    errors = []
    prune_and_validate({"spec": {}}, schema, "", errors, top=True)
    assert [(r, f) for r, f, _ in errors] == [("FieldValueRequired", "spec.n")]


def _pb_field(num, payload: bytes) -> bytes:
    def varint(v):
        out = b""
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def test_protobuf_secret_body():
    meta = _pb_field(1, b"s1") + _pb_field(3, b"") + _pb_field(11, _pb_field(1, b"app") + _pb_field(2, b"x"))
    secret = _pb_field(1, meta) + _pb_field(2, _pb_field(1, b"key") + _pb_field(2, b"\x00\x01")) + \
        _pb_field(3, b"Opaque")
    env = b"k8s\x00" + _pb_field(1, _pb_field(1, b"v1") + _pb_field(2, b"Secret")) + _pb_field(2, secret)
    obj = pb_decode_object(env)
    assert obj == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1", "labels": {"app": "x"}},
                   "data": {"key": base64.b64encode(b"\x00\x01").decode()}, "type": "Opaque"}
    with pytest.raises(KeyError):
        pb_decode_object(b"k8s\x00" + _pb_field(1, _pb_field(1, b"apps/v1") + _pb_field(2, b"Deployment")))
