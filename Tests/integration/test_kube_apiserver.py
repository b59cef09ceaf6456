"""The test Kubernetes API server checked against a real client (kubectl
v1.35) and by direct HTTPS requests: the behaviour the driver and the operator
rely on must be the real server's."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest
import yaml

from kubeapi_fixture import wait_for

NS = "/api/v1/namespaces/default"
SPC = "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/default/secretproviderclasses"
SPCPS = "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/default/secretproviderclasspodstatuses"

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              color: {type: string}
          status:
            type: object
            properties:
              ready: {type: boolean}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"""

DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: csi-secrets-store
  namespace: default
  labels: {app: csi}
spec:
  selector:
    matchLabels: {app: csi}
  template:
    metadata:
      labels: {app: csi}
    spec:
      containers:
      - name: secrets-store
        image: example/driver:IMAGE
        env:
        - {name: A, value: "1"}
      - name: registrar
        image: example/registrar:v2
"""


def pod(name, node="node-1", labels=None):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1"}]}}


def spc(name, **labels):
    return {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
            "metadata": {"name": name, "labels": labels}, "spec": {"provider": "vault", "parameters": {"a": "b"}}}


def assert_status(obj, code, reason):
    assert obj["kind"] == "Status" and obj["apiVersion"] == "v1", obj
    assert obj["status"] == "Failure" and obj["code"] == code and obj["reason"] == reason, obj
    assert obj["message"], obj


# ------------------------------------------------------------------ kubectl


def test_kubectl_applies_a_crd_then_its_objects_and_reapplies_a_change(kube_api_factory, tmp_path):
    api = kube_api_factory(preload=())
    crd = tmp_path / "crd.yaml"
    crd.write_text(WIDGET_CRD)
    api.kubectl("apply", "-f", crd)
    wait_for(lambda: "widgets" in api.kubectl("api-resources", "--api-group=example.com").stdout, 10,
             "widgets in discovery")
    objs = tmp_path / "objs.yaml"

    def write(image, size):
        objs.write_text(DAEMONSET.replace("IMAGE", image) + f"""
---
apiVersion: example.com/v1
kind: Widget
metadata: {{name: w1, namespace: default}}
spec: {{size: {size}, color: blue}}
""")
    write("v1", 1)
    out = api.kubectl("apply", "-f", objs).stdout
    assert "daemonset.apps/csi-secrets-store created" in out and "widget.example.com/w1 created" in out
    ds = api.kubectl_json("get", "ds", "csi-secrets-store")
    assert ds["metadata"]["generation"] == 1 and ds["metadata"]["uid"] and ds["metadata"]["creationTimestamp"]
    rv1 = int(ds["metadata"]["resourceVersion"])

    write("v2", 3)
    out = api.kubectl("apply", "-f", objs).stdout
    assert "configured" in out
    ds = api.kubectl_json("get", "ds", "csi-secrets-store")
    containers = {c["name"]: c for c in ds["spec"]["template"]["spec"]["containers"]}
    assert containers["secrets-store"]["image"] == "example/driver:v2"
    assert containers["registrar"]["image"] == "example/registrar:v2"
    assert ds["metadata"]["generation"] == 2 and int(ds["metadata"]["resourceVersion"]) > rv1
    w = api.kubectl_json("get", "widget", "w1")
    assert w["spec"] == {"size": 3, "color": "blue"} and w["metadata"]["generation"] == 2
    # the printer column comes from the CRD; short names work
    table = api.kubectl("get", "wd").stdout
    assert "SIZE" in table and "w1" in table and "3" in table
    # the v1beta1 view of the same object
    assert api.get("/apis/example.com/v1beta1/namespaces/default/widgets/w1")["apiVersion"] == "example.com/v1beta1"

    # unchanged re-apply writes nothing
    out = api.kubectl("apply", "-f", objs).stdout
    assert "unchanged" in out
    assert int(api.kubectl_json("get", "ds", "csi-secrets-store")["metadata"]["resourceVersion"]) == \
        int(ds["metadata"]["resourceVersion"])

    # server-side apply of a change
    write("v3", 3)
    out = api.kubectl("apply", "--server-side", "--force-conflicts", "-f", objs).stdout
    assert "serverside-applied" in out
    ds = api.kubectl_json("get", "ds", "csi-secrets-store")
    assert {c["image"] for c in ds["spec"]["template"]["spec"]["containers"]} == {"example/driver:v3",
                                                                                   "example/registrar:v2"}

    out = api.kubectl("delete", "-f", objs).stdout
    assert "deleted" in out
    r = api.kubectl("get", "ds", "csi-secrets-store", check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr
    # kubectl apply without validation works as well
    assert "created" in api.kubectl("apply", "--validate=false", "-f", objs).stdout


def test_kubectl_get_watch_sees_changes(kube_api):
    api = kube_api
    api.create(f"{NS}/configmaps", {"metadata": {"name": "before"}, "data": {"a": "1"}})
    w = api.kubectl("get", "configmaps", "-w", "--output-watch-events", background=True)
    lines = []

    import threading

    def read():
        for line in w.stdout:
            lines.append(line.strip())
    t = threading.Thread(target=read, daemon=True)
    t.start()
    wait_for(lambda: any(x.split()[:2] == ["ADDED", "before"] for x in lines), 15, "the initial listing")
    api.create(f"{NS}/configmaps", {"metadata": {"name": "after"}, "data": {"a": "1"}})
    wait_for(lambda: any(x.split()[:2] == ["ADDED", "after"] for x in lines), 15, "the ADDED line")
    api.ok("PATCH", f"{NS}/configmaps/after", {"data": {"a": "2"}}, content_type="application/merge-patch+json")
    wait_for(lambda: any(x.split()[:2] == ["MODIFIED", "after"] for x in lines), 15, "the MODIFIED line")
    api.ok("DELETE", f"{NS}/configmaps/after")
    wait_for(lambda: any(x.split()[:2] == ["DELETED", "after"] for x in lines), 15, "the DELETED line")


def test_kubectl_label_and_field_selectors(kube_api):
    api = kube_api
    for name, labels in [("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "db"}), ("c", {})]:
        api.create(f"{NS}/secrets", {"metadata": {"name": name, "labels": labels}, "stringData": {"k": "v"}})

    def names(*sel):
        r = api.kubectl("get", "secrets", *sel, "-o", "jsonpath={.items[*].metadata.name}")
        return sorted(r.stdout.split())
    assert names("-l", "tier=web") == ["a"]
    assert names("-l", "tier==web") == ["a"]
    assert names("-l", "tier!=web") == ["b", "c"]
    assert names("-l", "tier in (web,db)") == ["a", "b"]
    assert names("-l", "tier notin (web)") == ["b", "c"]
    assert names("-l", "tier") == ["a", "b"]
    assert names("-l", "!tier") == ["c"]
    assert names("-l", "tier,env=prod") == ["a"]
    assert names("--field-selector", "metadata.name=b") == ["b"]
    assert names("--field-selector", "metadata.name!=b") == ["a", "c"]
    assert names("--field-selector", "type=Opaque", "-l", "tier=db") == ["b"]
    for n, node in (("p1", "node-1"), ("p2", "node-2")):
        api.create(f"{NS}/pods", pod(n, node))
    r = api.kubectl("get", "pods", "--field-selector", "spec.nodeName=node-2", "-o", "name")
    assert r.stdout.split() == ["pod/p2"]
    # an unsupported field is a 400, as on a real server
    r = api.kubectl("get", "pods", "--field-selector", "spec.bogus=x", check=False)
    assert r.returncode != 0 and "field label not supported" in r.stderr


def test_kubectl_shows_a_pod_status_object_as_yaml(kube_api):
    api = kube_api
    p = api.create(f"{NS}/pods", pod("web-0"))
    name = "web-0-default-my-spc"
    body = {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClassPodStatus",
            "metadata": {"name": name, "labels": {"internal.secrets-store.csi.k8s.io/node-name": "node-1"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web-0",
                                              "uid": p["metadata"]["uid"]}]},
            "status": {"podName": "web-0", "secretProviderClassName": "my-spc", "mounted": True,
                       "targetPath": "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/v/mount",
                       "objects": [{"id": "secret/a", "version": "1"}]}}
    api.create(SPCPS, body)
    out = api.kubectl("get", "secretproviderclasspodstatus", name, "-o", "yaml").stdout
    doc = yaml.safe_load(out)
    assert doc["kind"] == "SecretProviderClassPodStatus"
    assert doc["status"]["objects"] == [{"id": "secret/a", "version": "1"}] and doc["status"]["mounted"] is True
    assert doc["metadata"]["ownerReferences"][0]["uid"] == p["metadata"]["uid"]
    assert "web-0-default-my-spc" in api.kubectl("get", "secretproviderclasspodstatuses",
                                                 "-l", "internal.secrets-store.csi.k8s.io/node-name=node-1").stdout
    # deleting the pod garbage-collects the status object
    api.kubectl("delete", "pod", "web-0")
    wait_for(lambda: api.request("GET", f"{SPCPS}/{name}")[0] == 404, 10, "the status object to be collected")


# ------------------------------------------------------------------ HTTP: errors


def test_401_without_or_with_an_unknown_token(kube_api):
    for token in (None, "not-a-token"):
        code, body = kube_api.request("GET", f"{NS}/secrets", token=token)
        assert code == 401
        assert_status(body, 401, "Unauthorized")
    # urllib with the server's CA: TLS verifies against the generated CA
    ctx = ssl.create_default_context(cafile=kube_api.ca)
    req = urllib.request.Request(kube_api.url + "/version", headers={"Authorization": f"Bearer {kube_api.admin_token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        assert json.loads(r.read())["gitVersion"].startswith("v1.35")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(kube_api.url + "/api", context=ctx, timeout=10)
    assert e.value.code == 401


def test_403_follows_the_token_rules(kube_api):
    api = kube_api
    api.create("/api/v1/namespaces", {"metadata": {"name": "team"}})
    api.create(SPC, spc("mine"))
    tok = api.add_token("system:serviceaccount:kube-system:csi", rules=[
        {"verbs": ["get", "list", "watch"], "apiGroups": ["secrets-store.csi.x-k8s.io"],
         "resources": ["secretproviderclasses"], "namespaces": ["default"]},
        {"verbs": ["create", "patch"], "apiGroups": [""], "resources": ["events"]}])
    assert api.request("GET", f"{SPC}/mine", token=tok)[0] == 200
    assert api.request("GET", SPC, token=tok)[0] == 200
    code, body = api.request("DELETE", f"{SPC}/mine", token=tok)
    assert code == 403
    assert_status(body, 403, "Forbidden")
    assert body["details"] == {"name": "mine", "group": "secrets-store.csi.x-k8s.io", "kind": "secretproviderclasses"}
    assert 'cannot delete resource "secretproviderclasses" in API group "secrets-store.csi.x-k8s.io" in the ' \
           'namespace "default"' in body["message"]
    code, body = api.request("GET", "/apis/secrets-store.csi.x-k8s.io/v1/secretproviderclasses", token=tok)
    assert code == 403 and "at the cluster scope" in body["message"]
    assert api.request("GET", "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/team/secretproviderclasses",
                       token=tok)[0] == 403
    assert api.request("GET", f"{NS}/secrets", token=tok)[0] == 403
    assert api.request("POST", f"{NS}/events", {"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod"}},
                       token=tok)[0] == 201
    # discovery is open to any authenticated user
    assert api.request("GET", "/apis", token=tok)[0] == 200
    # tokens bound through stored RBAC objects
    sa = api.add_service_account_token("kube-system", "operator", rules=[])
    assert api.request("GET", f"{NS}/configmaps", token=sa)[0] == 403
    api.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        "metadata": {"name": "cm-reader"},
        "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["configmaps"]}]})
    api.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", {
        "metadata": {"name": "op"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": "kube-system"}]})
    assert api.request("GET", f"{NS}/configmaps", token=sa)[0] == 200
    assert api.request("GET", "/api/v1/namespaces/team/configmaps", token=sa)[0] == 403
    r = api.kubectl("auth", "can-i", "list", "configmaps", "-n", "default", kubeconfig=api.kubeconfig_for(sa),
                    check=False)
    assert r.stdout.strip() == "yes", r.stderr


def test_404_has_a_status_body(kube_api):
    code, body = kube_api.request("GET", f"{SPC}/nope")
    assert code == 404
    assert_status(body, 404, "NotFound")
    assert body["details"] == {"name": "nope", "group": "secrets-store.csi.x-k8s.io", "kind": "secretproviderclasses"}
    assert body["message"] == 'secretproviderclasses.secrets-store.csi.x-k8s.io "nope" not found'
    code, body = kube_api.request("GET", f"{NS}/pods/nope")
    assert code == 404 and body["details"] == {"name": "nope", "kind": "pods"}
    assert body["message"] == 'pods "nope" not found'
    code, body = kube_api.request("GET", "/apis/nothing.example.com/v1/things")
    assert code == 404 and body["reason"] == "NotFound"
    # a namespace that does not exist
    code, body = kube_api.request("POST", "/api/v1/namespaces/ghost/secrets", {"metadata": {"name": "s"}})
    assert code == 404 and body["details"]["kind"] == "namespaces"


def test_409_on_create_of_an_existing_object_and_on_a_stale_resource_version(kube_api):
    api = kube_api
    first = api.create(SPC, spc("a"))
    code, body = api.request("POST", SPC, spc("a"))
    assert code == 409
    assert_status(body, 409, "AlreadyExists")
    assert body["details"]["name"] == "a"
    updated = dict(first, spec={"provider": "azure"})
    second = api.ok("PUT", f"{SPC}/a", updated)
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert second["metadata"]["generation"] == 2 and second["metadata"]["uid"] == first["metadata"]["uid"]
    code, body = api.request("PUT", f"{SPC}/a", updated)  # first's resourceVersion again
    assert code == 409
    assert_status(body, 409, "Conflict")
    assert "the object has been modified" in body["message"]
    # a custom resource cannot be updated unconditionally
    blind = {k: v for k, v in second.items()}
    blind["metadata"] = {k: v for k, v in second["metadata"].items() if k != "resourceVersion"}
    code, body = api.request("PUT", f"{SPC}/a", blind)
    assert code == 422 and body["reason"] == "Invalid"
    # a merge patch carrying a stale resourceVersion conflicts too
    code, body = api.request("PATCH", f"{SPC}/a", {"metadata": {"resourceVersion": first["metadata"]["resourceVersion"]},
                                                   "spec": {"provider": "x"}},
                             content_type="application/merge-patch+json")
    assert code == 409


def test_422_for_invalid_objects(kube_api):
    api = kube_api
    code, body = api.request("POST", f"{NS}/secrets", {"metadata": {}})
    assert code == 422
    assert_status(body, 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    code, body = api.request("POST", f"{NS}/secrets", {"metadata": {"name": "Bad_Name"}})
    assert code == 422 and "RFC 1123" in body["message"] and body["details"]["kind"] == "Secret"
    code, body = api.request("POST", f"{NS}/secrets", {"metadata": {"name": "l", "labels": {"k": "x" * 64}}})
    assert code == 422
    code, body = api.request("POST", f"{NS}/secrets", {"metadata": {"name": "t"}, "type": "kubernetes.io/tls",
                                                       "data": {"tls.crt": "YQ=="}})
    assert code == 422 and "tls.key" in body["message"]
    code, body = api.request("POST", SPC, {"metadata": {"name": "typed"}, "spec": {"provider": 3}})
    assert code == 422 and "spec.provider" in body["message"]
    # what the typed JSON decoding refuses: 400
    code, body = api.request("POST", f"{NS}/configmaps", {"metadata": {"name": "n", "labels": {"a": 1}}})
    assert code == 400 and body["reason"] == "BadRequest" and "cannot unmarshal number" in body["message"]
    code, body = api.request("POST", f"{NS}/configmaps", {"metadata": {"name": "n"}, "data": {"a": True}})
    assert code == 400
    code, body = api.request("POST", SPC, {"metadata": {"name": "n", "annotations": {"a": 2}}})
    assert code == 400
    # generateName
    made = api.create(f"{NS}/configmaps", {"metadata": {"generateName": "gen-"}})
    assert made["metadata"]["name"].startswith("gen-") and len(made["metadata"]["name"]) == 9


# ------------------------------------------------------------------ HTTP: writes


def test_patches(kube_api):
    api = kube_api
    api.create(SPC, dict(spc("p"), spec={"provider": "vault", "parameters": {"a": "1", "b": "2"}}))
    out = api.ok("PATCH", f"{SPC}/p", {"spec": {"parameters": {"a": None, "c": "3"}}},
                 content_type="application/merge-patch+json")
    assert out["spec"]["parameters"] == {"b": "2", "c": "3"}
    out = api.ok("PATCH", f"{SPC}/p", [{"op": "replace", "path": "/spec/provider", "value": "gcp"},
                                       {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}],
                 content_type="application/json-patch+json")
    assert out["spec"]["provider"] == "gcp" and out["metadata"]["labels"] == {"x": "y"}
    code, body = api.request("PATCH", f"{SPC}/p", {"spec": {}}, content_type="application/strategic-merge-patch+json")
    assert code == 415  # custom resources take no strategic merge patch
    # strategic merge patch on a built-in: containers merge by name
    api.create("/apis/apps/v1/namespaces/default/deployments", {
        "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "one", "image": "i:1", "env": [{"name": "X", "value": "1"}]},
                                    {"name": "two", "image": "j:1"}]}}}})
    out = api.ok("PATCH", "/apis/apps/v1/namespaces/default/deployments/d",
                 {"spec": {"template": {"spec": {"containers": [{"name": "two", "image": "j:2"}]}}}},
                 content_type="application/strategic-merge-patch+json")
    cs = {c["name"]: c["image"] for c in out["spec"]["template"]["spec"]["containers"]}
    assert cs == {"one": "i:1", "two": "j:2"} and out["metadata"]["generation"] == 2
    # server-side apply creates and then merges
    cfg = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n  b: '2'\n"
    code, obj = api.request("PATCH", f"{NS}/configmaps/ssa", cfg, content_type="application/apply-patch+yaml",
                            query={"fieldManager": "op"})
    assert code == 201 and obj["data"] == {"a": "1", "b": "2"}
    cfg = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n"
    code, obj = api.request("PATCH", f"{NS}/configmaps/ssa", cfg, content_type="application/apply-patch+yaml",
                            query={"fieldManager": "op", "force": "true"})
    assert code == 200 and obj["data"] == {"a": "1"}


def test_status_subresource_and_generation(kube_api):
    api = kube_api
    base = "/apis/apps/v1/namespaces/default/daemonsets"
    ds = yaml.safe_load(DAEMONSET.replace("IMAGE", "v1"))
    ds["status"] = {"numberReady": 5}
    made = api.create(base, ds)
    assert made["status"]["numberReady"] == 0 and made["metadata"]["generation"] == 1
    st = dict(made, status={"numberReady": 3, "desiredNumberScheduled": 3})
    after = api.ok("PUT", f"{base}/csi-secrets-store/status", st)
    assert after["status"]["numberReady"] == 3 and after["metadata"]["generation"] == 1
    # the main resource ignores status; a spec change bumps generation
    upd = dict(after, status={"numberReady": 0})
    upd["spec"] = dict(after["spec"], minReadySeconds=5)
    after2 = api.ok("PUT", f"{base}/csi-secrets-store", upd)
    assert after2["status"]["numberReady"] == 3 and after2["metadata"]["generation"] == 2
    # /status ignores spec
    st2 = dict(after2, spec=dict(after2["spec"], minReadySeconds=9), status={"numberReady": 1})
    after3 = api.ok("PUT", f"{base}/csi-secrets-store/status", st2)
    assert after3["spec"]["minReadySeconds"] == 5 and after3["status"]["numberReady"] == 1
    out = api.ok("PATCH", f"{base}/csi-secrets-store/status", {"status": {"numberReady": 2}},
                 content_type="application/merge-patch+json")
    assert out["status"]["numberReady"] == 2
    # CRs with a status subresource drop status on create
    w = api.create(SPC, dict(spc("s"), status={"byPod": [{"id": "x"}]}))
    assert "status" not in w
    # a no-op update keeps the resourceVersion
    same = api.ok("PUT", f"{SPC}/s", w)
    assert same["metadata"]["resourceVersion"] == w["metadata"]["resourceVersion"]


def test_secret_string_data_and_events_in_both_groups(kube_api):
    api = kube_api
    s = api.create(f"{NS}/secrets", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert s["data"] == {"k": "dg=="} and "stringData" not in s and s["type"] == "Opaque"
    ev = {"metadata": {"name": "web-0.1"}, "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default",
                                                              "apiVersion": "v1"},
          "reason": "MountRotationComplete", "message": "rotated", "count": 1, "type": "Normal",
          "source": {"component": "secrets-store-csi-driver", "host": "node-1"}}
    api.create(f"{NS}/events", ev)
    lst = api.get(f"{NS}/events", query={"fieldSelector": "involvedObject.name=web-0,reason=MountRotationComplete"})
    assert [e["metadata"]["name"] for e in lst["items"]] == ["web-0.1"]
    assert lst["kind"] == "EventList" and "kind" not in lst["items"][0]
    ev2 = api.get("/apis/events.k8s.io/v1/namespaces/default/events/web-0.1")
    assert ev2["note"] == "rotated" and ev2["regarding"]["name"] == "web-0" and ev2["deprecatedCount"] == 1
    out = api.ok("PATCH", f"{NS}/events/web-0.1", {"count": 2}, content_type="application/strategic-merge-patch+json")
    assert out["count"] == 2
    assert "MountRotationComplete" in api.kubectl("get", "events").stdout


def test_list_pagination_and_resource_versions(kube_api):
    api = kube_api
    for i in range(5):
        api.create(f"{NS}/configmaps", {"metadata": {"name": f"cm{i}", "labels": {"page": "y"}}})
    first = api.get(f"{NS}/configmaps", query={"limit": 2, "labelSelector": "page=y"})
    assert len(first["items"]) == 2 and first["metadata"]["continue"] and first["metadata"]["remainingItemCount"] == 3
    api.create(f"{NS}/configmaps", {"metadata": {"name": "cm9", "labels": {"page": "y"}}})  # not in the snapshot
    names = [o["metadata"]["name"] for o in first["items"]]
    cont = first["metadata"]["continue"]
    while cont:
        page = api.get(f"{NS}/configmaps", query={"limit": 2, "labelSelector": "page=y", "continue": cont})
        names += [o["metadata"]["name"] for o in page["items"]]
        cont = page["metadata"].get("continue")
    assert names == [f"cm{i}" for i in range(5)]
    # after compaction the continue token is gone (410)
    api.compact()
    code, body = api.request("GET", f"{NS}/configmaps", query={"limit": 2, "continue": first["metadata"]["continue"]})
    assert code == 410 and body["reason"] == "Expired"
    rv = int(api.get(f"{NS}/configmaps")["metadata"]["resourceVersion"])
    code, body = api.request("GET", f"{NS}/configmaps", query={"resourceVersion": str(rv - 3),
                                                               "resourceVersionMatch": "Exact"})
    assert code == 410


# ------------------------------------------------------------------ watches


def test_watch_from_a_resource_version_with_bookmarks_and_410_after_compaction(kube_api):
    api = kube_api
    api.set_bookmark_interval(0.2)
    a = api.create(SPC, spc("a", app="x"))
    rv0 = a["metadata"]["resourceVersion"]
    b = api.create(SPC, spc("b", app="x"))
    w = api.watch(SPC, resourceVersion=rv0, allowWatchBookmarks="true", labelSelector="app=x")
    ev = w.next()
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "b"
    assert ev["object"]["kind"] == "SecretProviderClass" and ev["object"]["apiVersion"].endswith("/v1")
    api.ok("PATCH", f"{SPC}/a", {"spec": {"provider": "p2"}}, content_type="application/merge-patch+json")
    ev = w.next()
    assert ev["type"] == "MODIFIED" and ev["object"]["spec"]["provider"] == "p2"
    # leaving the selector is a DELETED for this watch
    api.ok("PATCH", f"{SPC}/b", {"metadata": {"labels": {"app": "other"}}}, content_type="application/merge-patch+json")
    ev = w.next()
    assert ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == "b"
    api.ok("DELETE", f"{SPC}/a")
    ev = w.next()
    assert ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == "a"
    last_rv = int(ev["object"]["metadata"]["resourceVersion"])
    # bookmarks carry the current resourceVersion
    bm = w.next(skip_bookmarks=False)
    assert bm["type"] == "BOOKMARK" and int(bm["object"]["metadata"]["resourceVersion"]) >= last_rv
    # a watch from before the compaction point gets an ERROR event with 410 Gone
    bump = api.create(f"{NS}/configmaps", {"metadata": {"name": "bump"}})
    # The first watch must have read past the bump before the compaction: a watcher that
    # compaction overtakes gets 410 (as with etcd), which is not what this part tests.
    while True:
        bm = w.next(skip_bookmarks=False)
        assert bm["type"] == "BOOKMARK", bm
        if int(bm["object"]["metadata"]["resourceVersion"]) >= int(bump["metadata"]["resourceVersion"]):
            break
    api.compact()
    w2 = api.watch(SPC, resourceVersion=rv0)
    ev = w2.next()
    assert ev["type"] == "ERROR" and ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
    assert w2.wait_ended(10)
    # a watch from "now" still works after compaction
    rv = api.get(SPC)["metadata"]["resourceVersion"]
    w3 = api.watch(SPC, resourceVersion=rv, timeoutSeconds=30)
    api.create(SPC, spc("c"))
    assert w3.next()["object"]["metadata"]["name"] == "c"
    # the first watch got nothing about the unrelated configmap
    api.create(SPC, spc("d", app="x"))
    ev = w.next()
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "d"


def test_watch_without_resource_version_starts_with_the_current_objects_and_times_out(kube_api):
    api = kube_api
    api.create(SPC, spc("a"))
    w = api.watch(SPC, timeoutSeconds=1)
    ev = w.next()
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "a"
    assert w.wait_ended(15)
    # sendInitialEvents: ADDED events, then a bookmark marking their end
    w = api.watch(SPC, sendInitialEvents="true", allowWatchBookmarks="true", resourceVersionMatch="NotOlderThan")
    assert w.next()["object"]["metadata"]["name"] == "a"
    bm = w.next(skip_bookmarks=False)
    assert bm["type"] == "BOOKMARK"
    assert bm["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"


# ------------------------------------------------------------------ garbage collection, deletion


def test_garbage_collection_of_dependents_cascades(kube_api):
    api = kube_api
    p = api.create(f"{NS}/pods", pod("web-0"))
    other = api.create(f"{NS}/pods", pod("web-1"))
    owner = lambda o: {"apiVersion": "v1", "kind": o["kind"], "name": o["metadata"]["name"],  # noqa: E731
                       "uid": o["metadata"]["uid"]}
    ps = api.create(SPCPS, {"metadata": {"name": "web-0-default-spc", "ownerReferences": [owner(p)]},
                            "status": {"podName": "web-0"}})
    ps_ref = {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClassPodStatus",
              "name": ps["metadata"]["name"], "uid": ps["metadata"]["uid"]}
    api.create(f"{NS}/secrets", {"metadata": {"name": "synced", "ownerReferences": [ps_ref]}, "data": {}})
    api.create(f"{NS}/secrets", {"metadata": {"name": "shared", "ownerReferences": [ps_ref, owner(other)]}})
    api.ok("DELETE", f"{NS}/pods/web-0")
    api.wait_gone(f"{SPCPS}/web-0-default-spc")
    api.wait_gone(f"{NS}/secrets/synced")
    # an object with an owner left keeps living; the dangling reference goes
    shared = api.wait_for_object(f"{NS}/secrets/shared", lambda s: len(s["metadata"]["ownerReferences"]) == 1)
    assert shared["metadata"]["ownerReferences"][0]["name"] == "web-1"
    # an owner reference to a uid that never existed
    api.create(f"{NS}/configmaps", {"metadata": {"name": "orphan", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}]}})
    wait_for(lambda: api.request("GET", f"{NS}/configmaps/orphan")[0] == 404, 10, "the orphan collected")


def test_finalizers_foreground_and_orphan_deletion(kube_api):
    api = kube_api
    a = api.create(f"{NS}/configmaps", {"metadata": {"name": "fin", "finalizers": ["example.com/keep"]}})
    code, obj = api.request("DELETE", f"{NS}/configmaps/fin")
    assert code == 202 and obj["metadata"]["deletionTimestamp"]
    cur = api.get(f"{NS}/configmaps/fin")
    code, _ = api.request("PUT", f"{NS}/configmaps/fin", dict(cur, metadata=dict(cur["metadata"], finalizers=[
        "example.com/keep", "example.com/new"])))
    assert code == 422
    api.ok("PATCH", f"{NS}/configmaps/fin", {"metadata": {"finalizers": None}},
           content_type="application/merge-patch+json")
    assert api.request("GET", f"{NS}/configmaps/fin")[0] == 404

    def ref(o):
        return {"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
    owner = api.create(f"{NS}/configmaps", {"metadata": {"name": "owner"}})
    api.create(f"{NS}/configmaps", {"metadata": {"name": "dep", "ownerReferences": [ref(owner)]}})
    code, _ = api.request("DELETE", f"{NS}/configmaps/owner", {"propagationPolicy": "Foreground"})
    assert code == 202
    wait_for(lambda: api.request("GET", f"{NS}/configmaps/owner")[0] == 404, 10, "foreground deletion to finish")
    assert api.request("GET", f"{NS}/configmaps/dep")[0] == 404
    owner = api.create(f"{NS}/configmaps", {"metadata": {"name": "owner2"}})
    api.create(f"{NS}/configmaps", {"metadata": {"name": "dep2", "ownerReferences": [ref(owner)]}})
    api.request("DELETE", f"{NS}/configmaps/owner2", query={"propagationPolicy": "Orphan"})
    wait_for(lambda: api.request("GET", f"{NS}/configmaps/owner2")[0] == 404, 10, "orphan deletion to finish")
    assert "ownerReferences" not in api.get(f"{NS}/configmaps/dep2")["metadata"]
    _ = a


def test_namespace_deletion_removes_its_contents(kube_api):
    api = kube_api
    api.kubectl("create", "namespace", "gone-soon", check=False)
    if api.request("GET", "/api/v1/namespaces/gone-soon")[0] != 200:
        api.create("/api/v1/namespaces", {"metadata": {"name": "gone-soon"}})
    api.create("/api/v1/namespaces/gone-soon/configmaps", {"metadata": {"name": "x"}})
    assert api.get("/api/v1/namespaces/gone-soon/serviceaccounts/default")
    api.kubectl("delete", "namespace", "gone-soon", "--timeout=20s")
    assert api.request("GET", "/api/v1/namespaces/gone-soon")[0] == 404
    assert api.request("GET", "/api/v1/namespaces/gone-soon/configmaps/x")[0] == 404


def test_crd_deletion_stops_serving_the_resource(kube_api_factory):
    api = kube_api_factory(preload=())
    crd = yaml.safe_load(WIDGET_CRD)
    api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    got = api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert {c["type"]: c["status"] for c in got["status"]["conditions"]}["Established"] == "True"
    gv = api.get("/apis/example.com/v1")
    names = {r["name"]: r for r in gv["resources"]}
    assert names["widgets"]["namespaced"] and names["widgets"]["kind"] == "Widget"
    assert names["widgets"]["shortNames"] == ["wd"] and "watch" in names["widgets"]["verbs"]
    assert "widgets/status" in names
    groups = {g["name"]: g for g in api.get("/apis")["groups"]}
    assert groups["example.com"]["preferredVersion"]["version"] == "v1"
    agg = api.get("/apis", headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                                              "application/json"})
    assert agg["kind"] == "APIGroupDiscoveryList"
    ex = next(i for i in agg["items"] if i["metadata"]["name"] == "example.com")
    assert [v["version"] for v in ex["versions"]] == ["v1", "v1beta1"]
    wres = ex["versions"][0]["resources"][0]
    assert (wres["resource"], wres["scope"], wres["responseKind"]["kind"]) == ("widgets", "Namespaced", "Widget")
    assert wres["subresources"][0]["subresource"] == "status"
    api.create("/apis/example.com/v1/namespaces/default/widgets",
               {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                "spec": {"size": 2, "junk": 1}})
    w = api.get("/apis/example.com/v1beta1/namespaces/default/widgets/w")
    assert w["spec"] == {"size": 2}, "unknown fields are pruned per the v1 schema"
    assert w["apiVersion"] == "example.com/v1beta1"
    code, body = api.request("POST", "/apis/example.com/v1/namespaces/default/widgets",
                             {"metadata": {"name": "strict"}, "spec": {"junk": 1}},
                             query={"fieldValidation": "Strict"})
    assert code == 400 and "unknown field" in body["message"]
    api.ok("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert api.request("GET", "/apis/example.com/v1/namespaces/default/widgets")[0] == 404
    assert "example.com" not in {g["name"] for g in api.get("/apis")["groups"]}


# ------------------------------------------------------------------ control API


def test_request_log_counts_requests_per_operation(kube_api):
    api = kube_api
    api.clear_requests()
    api.create(SPC, spc("a"))
    api.get(f"{SPC}/a")
    api.get(f"{SPC}/a")
    api.get(SPC)
    log = api.requests()
    assert log["counts"] == {"create secretproviderclasses": 1, "get secretproviderclasses": 2,
                             "list secretproviderclasses": 1}
    r = log["requests"][1]
    assert (r["method"], r["verb"], r["resource"], r["namespace"], r["name"], r["code"]) == \
        ("GET", "get", "secretproviderclasses", "default", "a", 200)
    later = api.requests(since=log["next"])
    assert later["requests"] == []


def test_injected_conflicts_and_faults(kube_api):
    api = kube_api
    a = api.create(SPC, spc("a"))
    api.inject_conflicts("secretproviderclasses", count=2, name="a")
    for _ in range(2):
        code, body = api.request("PUT", f"{SPC}/a", a)
        assert code == 409 and body["reason"] == "Conflict"
    assert api.request("PUT", f"{SPC}/a", a)[0] == 200
    api.inject_fault("secretproviderclasses", 429, count=1, verbs=["get"], retry_after=1)
    code, body = api.request("GET", f"{SPC}/a")
    assert code == 429 and body["reason"] == "TooManyRequests"
    assert api.request("GET", f"{SPC}/a")[0] == 200
    # a delay on one kind of write only
    api.slow_down("secretproviderclasspodstatuses", 0.5, verbs=["create"])
    t0 = time.monotonic()
    api.create(SPCPS, {"metadata": {"name": "slow"}})
    assert time.monotonic() - t0 >= 0.5
    faults = api.control("GET", "/faults")["faults"]
    assert [(f["resource"], f["verbs"], f["delay"], f["count"]) for f in faults] == [
        ("secretproviderclasspodstatuses", ["create"], 0.5, -1)]
    api.clear_faults()
    assert api.control("GET", "/faults")["faults"] == []


def test_outages_and_dropped_watches(kube_api):
    api = kube_api
    w = api.watch(SPC, resourceVersion=api.get(SPC)["metadata"]["resourceVersion"])
    api.drop_watches()
    assert w.wait_ended(10), "the watch ends when dropped"
    api.down(mode="503")
    code, body = api.request("GET", SPC)
    assert code == 503 and body["reason"] == "ServiceUnavailable"
    api.up()
    assert api.request("GET", SPC)[0] == 200
    w = api.watch(SPC, resourceVersion=api.get(SPC)["metadata"]["resourceVersion"])
    api.down(seconds=60, mode="refuse")
    assert w.wait_ended(10), "open connections are reset"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", api.port), timeout=2).close()
        api.request("GET", SPC, timeout=2)
    api.up()
    wait_for(lambda: _reachable(api), 10, "the server to come back")
    api.down(seconds=0.5, mode="refuse")
    wait_for(lambda: _reachable(api), 15, "the server to come back by itself")
    # hang: connected but no answer until back
    rv = api.get(SPC)["metadata"]["resourceVersion"]
    w = api.watch(SPC, resourceVersion=rv)
    api.down(seconds=60, mode="hang")
    with pytest.raises(OSError):  # socket.timeout is an OSError
        api.request("GET", SPC, timeout=1)
    assert api.state()["down"] == "hang"
    api.up()
    api.create(SPC, spc("after-hang"))
    assert w.next()["object"]["metadata"]["name"] == "after-hang"
    api.set_latency(0.3)
    t0 = time.monotonic()
    api.get(SPC)
    assert time.monotonic() - t0 >= 0.3
    api.set_latency(0)


def _reachable(api):
    try:
        return api.request("GET", "/version", timeout=2)[0] == 200
    except OSError:
        return False


def test_tokens_expire_and_are_reloaded_from_the_file(kube_api):
    api = kube_api
    tok = api.add_token("driver", rules=[{"verbs": ["get", "list"], "apiGroups": ["*"], "resources": ["*"]}])
    assert api.request("GET", SPC, token=tok)[0] == 200
    assert api.expire_token(tok) == 1
    code, body = api.request("GET", SPC, token=tok)
    assert code == 401 and body["reason"] == "Unauthorized"
    # the token file is re-read when it changes (as a rotated token file would be)
    from pathlib import Path
    p = Path(api.tokens_file)
    doc = json.loads(p.read_text())
    doc["tokens"].append({"token": "hand-written", "user": "hand", "groups": ["system:masters"]})
    tmp = p.with_suffix(".new")
    tmp.write_text(json.dumps(doc))
    tmp.replace(p)
    wait_for(lambda: api.request("GET", SPC, token="hand-written")[0] == 200, 10, "the new token")
    # rotation: same user and rules, the old token stops working
    t1 = api.add_token("rotating", rules=[{"verbs": ["list"], "apiGroups": ["*"], "resources": ["*"]}])
    t2 = api.rotate_token(t1)
    assert api.request("GET", SPC, token=t1)[0] == 401
    assert api.request("GET", SPC, token=t2)[0] == 200
    assert api.request("DELETE", f"{SPC}/x", token=t2)[0] == 403


def test_server_stops_cleanly_with_open_watches(kube_api_factory):
    api = kube_api_factory()
    ws = [api.watch(SPC) for _ in range(3)]
    for _ in range(20):
        api.get("/version")
    st = api.state()
    assert st["openConnections"] >= 3
    wait_for(lambda: api.state()["openConnections"] <= 4, 10, "finished connections to close")
    api.stop()
    assert api.proc.returncode == 0, "exited by itself on SIGTERM (not killed after the grace period)"
    for w in ws:
        assert w.wait_ended(5)


def test_http2_when_offered(kube_api_factory, tmp_path):
    api = kube_api_factory("--http2")
    ctx = ssl.create_default_context(cafile=api.ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.selected_alpn_protocol() == "h2"
    # kubectl (Go) speaks HTTP/2 to it: a watch and writes
    import threading
    w = api.kubectl("get", "secretproviderclasses", "-w", "--output-watch-events", background=True)
    lines = []
    threading.Thread(target=lambda: [lines.append(x.strip()) for x in w.stdout], daemon=True).start()
    f = tmp_path / "spc.yaml"
    f.write_text(yaml.safe_dump(spc("over-h2")))
    api.kubectl("apply", "-f", f)
    wait_for(lambda: any(x.split()[:2] == ["ADDED", "over-h2"] for x in lines), 15, "the ADDED line over HTTP/2")
    assert api.kubectl_json("get", "secretproviderclass", "over-h2")["spec"]["provider"] == "vault"
    # HTTP/1.1 clients still work
    assert api.get(SPC)["items"][0]["metadata"]["name"] == "over-h2"


def test_client_certificates_authenticate(kube_api):
    api = kube_api
    admin = api.client_cert("cert-admin", ["system:masters"])
    assert "created" in api.kubectl("create", "configmap", "by-cert", kubeconfig=admin["kubeconfig"]).stdout
    plain = api.client_cert("nobody")
    r = api.kubectl("get", "configmaps", kubeconfig=plain["kubeconfig"], check=False)
    assert r.returncode != 0 and 'User "nobody" cannot list resource "configmaps"' in r.stderr
    ctx = ssl.create_default_context(cafile=api.ca)
    ctx.load_cert_chain(admin["cert"], admin["key"])
    with urllib.request.urlopen(urllib.request.Request(api.url + f"{NS}/configmaps/by-cert"), context=ctx,
                                timeout=10) as resp:
        assert json.loads(resp.read())["metadata"]["name"] == "by-cert"
    log = api.requests()["requests"]
    assert any(e["user"] == "cert-admin" and e["verb"] == "create" for e in log)


def test_managed_fields_and_metadata_only_answers(kube_api):
    api = kube_api
    made = api.create(SPC, spc("m"), query={"fieldManager": "csi-driver"})
    mf = made["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"]) for e in mf] == [("csi-driver", "Update")]
    assert "f:spec" in mf[0]["fieldsV1"] and mf[0]["fieldsType"] == "FieldsV1"
    out = api.ok("PATCH", f"{SPC}/m", {"spec": {"provider": "p"}}, content_type="application/merge-patch+json",
                 query={"fieldManager": "other"})
    assert {e["manager"] for e in out["metadata"]["managedFields"]} == {"csi-driver", "other"}
    # kubectl hides them unless asked
    assert "managedFields" not in api.kubectl("get", "secretproviderclass", "m", "-o", "yaml").stdout
    assert "managedFields" in api.kubectl("get", "secretproviderclass", "m", "-o", "yaml",
                                          "--show-managed-fields").stdout
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    lst = api.get(SPC, headers={"Accept": accept})
    assert lst["kind"] == "PartialObjectMetadataList"
    assert lst["items"][0] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": out["metadata"]}


def test_deprecated_versions_warn(kube_api):
    api = kube_api
    api.create(SPC, spc("old"))
    r = api.kubectl("get", "secretproviderclasses.v1alpha1.secrets-store.csi.x-k8s.io", "old")
    assert "secrets-store.csi.x-k8s.io/v1alpha1 SecretProviderClass is deprecated" in r.stderr
    assert "deprecated" not in api.kubectl("get", "secretproviderclass", "old").stderr


def test_preloading_crds_from_files(kube_api_factory, tmp_path):
    d = tmp_path / "crds"
    d.mkdir()
    (d / "widgets.yaml").write_text(WIDGET_CRD)
    api = kube_api_factory("--preload-crds", str(d), preload=("clustercsidriver", "olm,monitoring"))
    csv = api.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "operators.coreos.com/v1alpha1", "kind": "ClusterServiceVersion",
        "metadata": {"name": "op.v1", "namespace": "default"},
        "spec": {"install": {"strategy": "deployment"}, "installModes": [{"type": "AllNamespaces",
                                                                           "supported": True}]}}))
    assert "created" in csv.stdout
    assert api.kubectl_json("get", "csv", "op.v1")["spec"]["installModes"][0]["type"] == "AllNamespaces"
    assert api.get("/apis/example.com/v1")["resources"][0]["name"] == "widgets"
    made = api.create("/apis/operator.openshift.io/v1/clustercsidrivers", {
        "apiVersion": "operator.openshift.io/v1", "kind": "ClusterCSIDriver",
        "metadata": {"name": "secrets-store.csi.k8s.io"}, "spec": {"managementState": "Managed"}})
    assert "namespace" not in made["metadata"] and made["spec"]["managementState"] == "Managed"
    st = api.ok("PUT", "/apis/operator.openshift.io/v1/clustercsidrivers/secrets-store.csi.k8s.io/status",
                dict(made, status={"conditions": [{"type": "Available", "status": "True"}]}))
    assert st["status"]["conditions"][0]["type"] == "Available" and st["metadata"]["generation"] == 1
    assert api.request("GET", SPC)[0] == 404  # secrets-store CRDs were not asked for


def test_graceful_pod_deletion(kube_api_factory):
    api = kube_api_factory("--pod-grace")
    p = api.create(f"{NS}/pods", pod("web-0"))
    api.create(SPCPS, {"metadata": {"name": "ps", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": p["metadata"]["uid"]}]}})
    code, obj = api.request("DELETE", f"{NS}/pods/web-0")
    assert code == 200 and obj["metadata"]["deletionTimestamp"] and obj["metadata"]["deletionGracePeriodSeconds"] == 30
    api.run_gc()
    assert api.request("GET", f"{SPCPS}/ps")[0] == 200, "the pod still exists: its dependents stay"
    api.ok("DELETE", f"{NS}/pods/web-0", {"gracePeriodSeconds": 0})  # the kubelet is done
    assert api.request("GET", f"{NS}/pods/web-0")[0] == 404
    wait_for(lambda: api.request("GET", f"{SPCPS}/ps")[0] == 404, 10, "the status object collected")
    # a pod's grace period runs out by itself
    api.create(f"{NS}/pods", dict(pod("web-1"), spec=dict(pod("web-1")["spec"], terminationGracePeriodSeconds=1)))
    api.ok("DELETE", f"{NS}/pods/web-1")
    wait_for(lambda: api.request("GET", f"{NS}/pods/web-1")[0] == 404, 15, "the grace period to pass")
    # an unscheduled pod goes at once
    api.create(f"{NS}/pods", {"metadata": {"name": "pending"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})
    api.ok("DELETE", f"{NS}/pods/pending")
    assert api.request("GET", f"{NS}/pods/pending")[0] == 404


def test_aggregated_cluster_roles(kube_api):
    """The upstream chart's secretproviderclasses-admin role aggregates into admin."""
    api = kube_api
    tok = api.add_token("alice", rbac=True)
    api.create("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", {
        "metadata": {"name": "alice-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "alice"}]})
    assert api.request("GET", f"{NS}/configmaps", token=tok)[0] == 200
    assert api.request("GET", SPC, token=tok)[0] == 403
    api.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        "metadata": {"name": "secretproviderclasses-admin-role",
                     "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
        "rules": [{"apiGroups": ["secrets-store.csi.x-k8s.io"], "resources": ["secretproviderclasses"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]})
    assert api.request("GET", SPC, token=tok)[0] == 200
    admin = api.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/admin")
    assert any("secretproviderclasses" in r.get("resources", []) for r in admin["rules"])
    assert api.request("GET", "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/kube-system/secretproviderclasses",
                       token=tok)[0] == 403


def test_escaped_names_in_paths(kube_api):
    # RBAC names may hold ':' (system:...), which some clients percent-encode
    got = kube_api.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Aaggregate-to-view")
    assert got["metadata"]["name"] == "system:aggregate-to-view"


def test_fixture_helpers_for_common_objects(kube_api):
    api = kube_api
    api.ensure_namespace("team")
    api.ensure_namespace("team")
    p = api.create_pod("web-0", namespace="team", node="node-7")
    assert p["spec"]["nodeName"] == "node-7" and p["metadata"]["uid"]
    c = api.create_spc("cls", namespace="team", parameters={"objects": "a"},
                       secret_objects=[{"secretName": "s", "type": "Opaque", "data": [{"objectName": "a", "key": "k"}]}])
    assert c["spec"]["secretObjects"][0]["data"][0]["key"] == "k"
    old = api.create_spc("old", namespace="team", version="v1alpha1")
    assert old["apiVersion"] == "secrets-store.csi.x-k8s.io/v1alpha1"


def test_any_field_selector_when_asked(kube_api_factory):
    api = kube_api_factory("--any-field-selector")
    api.create(f"{NS}/configmaps", {"metadata": {"name": "a"}, "data": {"k": "1"}})
    api.create(f"{NS}/configmaps", {"metadata": {"name": "b"}, "data": {"k": "2"}})
    got = api.get(f"{NS}/configmaps", query={"fieldSelector": "data.k=2"})
    assert [o["metadata"]["name"] for o in got["items"]] == ["b"]
