"""The driver's provider client (through the csi-provider-call tool) against
provider plugins written with Python grpcio, and one written on raw HTTP/2."""

from __future__ import annotations

import base64
import json

import grpc
import pytest

from fake_provider import FakeProvider
from support import field

T = 10


def mount_cmd(**over) -> dict:
    cmd = {
        "method": "Mount",
        "attributes": json.dumps({"secretProviderClass": "my-spc", "objects": "- name: a"}),
        "secrets": "null",
        "target_path": "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/v/mount",
        "permission": "420",
        "current_object_version": [],
        "timeout_ms": 5000,
    }
    cmd.update(over)
    return cmd


def ok_response(result: dict) -> dict:
    assert result["ok"] is True, f"call failed: {result}"
    resp = result.get("response")
    assert isinstance(resp, dict), f"no response object: {result}"
    return resp


def failure(result: dict, code: str) -> str:
    assert result["ok"] is False, f"expected {code}, got success: {result}"
    assert result.get("code") == code, f"expected {code}: {result}"
    return result.get("message", "")


# ---- round trips


def test_version_round_trip(provider, provider_call):
    provider.version = ("v1alpha1", "fake-provider", "1.2.3-ü")
    pc = provider_call(provider.endpoint)
    resp = ok_response(pc.call({"method": "Version"}))
    assert field(resp, "version") == "v1alpha1"
    assert field(resp, "runtime_name") == "fake-provider"
    assert field(resp, "runtime_version") == "1.2.3-ü"
    reqs = provider.calls("Version")
    assert len(reqs) == 1
    assert reqs[0].version == "v1alpha1"


def test_mount_round_trip_keeps_every_field(provider, provider_call):
    attributes = json.dumps({
        "secretProviderClass": "my-spc",
        "csi.storage.k8s.io/pod.name": "app-0",
        "csi.storage.k8s.io/serviceAccount.tokens": json.dumps({"aud": {"token": "t"}}),
        "objects": "array:\n  - |\n    objectName: \"a b\"\n",
        "unicode": "ünï\u2603 \"quoted\" \\ back",
    }, ensure_ascii=False)
    secrets_json = json.dumps({"username": "admin", "password": "p@ss\nword"})
    all_bytes = bytes(range(256))
    provider.files = [
        ("binary.bin", 0o600, all_bytes),
        ("dir/nested.txt", 0, b"nested\n"),
        ("empty", 0o644, b""),
    ]
    provider.object_versions = [("binary.bin", "7"), ("dir/nested.txt", "v2")]
    pc = provider_call(provider.endpoint)
    resp = ok_response(pc.call(mount_cmd(
        attributes=attributes, secrets=secrets_json, target_path="/tmp/target path/ü",
        permission="420",
        current_object_version=[{"id": "a", "version": "1"}, {"id": "b/c", "version": "2"}])))

    # What the provider received.
    [req] = provider.calls("Mount")
    assert req.attributes == attributes
    assert req.secrets == secrets_json
    assert req.target_path == "/tmp/target path/ü"
    assert req.permission == "420"
    assert [(v.id, v.version) for v in req.current_object_version] == [("a", "1"), ("b/c", "2")]

    # What the client got back.
    versions = [(v["id"], v["version"]) for v in field(resp, "object_version", [])]
    assert versions == [("binary.bin", "7"), ("dir/nested.txt", "v2")]
    files = field(resp, "files", [])
    got = [(f["path"], int(f.get("mode", 0)), base64.b64decode(f.get("contents", "")))
           for f in files]
    assert got == [("binary.bin", 0o600, all_bytes), ("dir/nested.txt", 0, b"nested\n"),
                   ("empty", 0o644, b"")]
    err = field(resp, "error") or {}
    assert not err.get("code"), f"unexpected error in response: {err}"


def test_mount_with_null_secrets_and_no_versions(provider, provider_call):
    pc = provider_call(provider.endpoint)
    ok_response(pc.call(mount_cmd(secrets="null", current_object_version=[])))
    [req] = provider.calls("Mount")
    assert req.secrets == "null"
    assert list(req.current_object_version) == []


def test_mount_response_error_code_is_returned(provider, provider_call):
    provider.mount_error = "AccessDenied"
    provider.files = []
    provider.object_versions = []
    pc = provider_call(provider.endpoint)
    resp = ok_response(pc.call(mount_cmd()))
    assert (field(resp, "error") or {}).get("code") == "AccessDenied"


@pytest.mark.parametrize("code", [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND,
                                  grpc.StatusCode.INTERNAL])
def test_provider_grpc_error_status_is_returned(provider, provider_call, code):
    provider.error_code = code
    provider.error_message = "the vault said no"
    pc = provider_call(provider.endpoint)
    msg = failure(pc.call(mount_cmd()), code.name)
    assert "the vault said no" in msg


def test_many_calls_on_one_connection(provider, provider_call):
    pc = provider_call(provider.endpoint)
    for i in range(50):
        method = "Version" if i % 2 else "Mount"
        cmd = {"method": "Version"} if method == "Version" else mount_cmd(
            current_object_version=[{"id": "i", "version": str(i)}])
        ok_response(pc.call(cmd))
    assert len(provider.calls("Mount")) == 25
    assert len(provider.calls("Version")) == 25


# ---- failures


def test_deadline_exceeded_when_provider_is_slow(provider, provider_call):
    provider.delay = 30.0  # far past timeout_ms; stop() interrupts it at teardown
    pc = provider_call(provider.endpoint)
    failure(pc.call(mount_cmd(timeout_ms=300), timeout=T), "DEADLINE_EXCEEDED")
    # The same client goes on working once the provider is quick again.
    provider.delay = 0
    ok_response(pc.call(mount_cmd()))


def test_response_over_max_recv_bytes_is_resource_exhausted(provider, provider_call):
    provider.pad_bytes = 200_000
    pc = provider_call(provider.endpoint, "--max-recv-bytes", "65536")
    failure(pc.call(mount_cmd()), "RESOURCE_EXHAUSTED")
    provider.pad_bytes = 0
    ok_response(pc.call(mount_cmd()))  # the connection is still usable


def test_default_max_recv_is_4mib(provider, provider_call):
    pc = provider_call(provider.endpoint)
    provider.pad_bytes = 4 * 1024 * 1024 + 1024
    failure(pc.call(mount_cmd()), "RESOURCE_EXHAUSTED")
    provider.pad_bytes = 3 * 1024 * 1024
    resp = ok_response(pc.call(mount_cmd()))
    sizes = {f["path"]: len(base64.b64decode(f.get("contents", ""))) for f in field(resp, "files")}
    assert sizes["padding.bin"] == 3 * 1024 * 1024


def test_provider_not_listening_is_unavailable(provider_call, workdir):
    pc = provider_call(f"unix://{workdir}/nobody.sock")
    failure(pc.call({"method": "Version"}), "UNAVAILABLE")
    failure(pc.call(mount_cmd()), "UNAVAILABLE")


def test_provider_stopped_is_unavailable(provider, provider_call):
    pc = provider_call(provider.endpoint)
    ok_response(pc.call({"method": "Version"}))
    provider.stop()
    failure(pc.call({"method": "Version"}), "UNAVAILABLE")


def test_reconnects_after_provider_restart_following_failure(provider, provider_call):
    pc = provider_call(provider.endpoint)
    ok_response(pc.call({"method": "Version"}))
    provider.stop()
    failure(pc.call(mount_cmd()), "UNAVAILABLE")
    provider.start()  # same socket path, a new server
    ok_response(pc.call(mount_cmd()))  # the very next call through the same process
    assert len(provider.calls("Mount")) == 1


def test_reconnects_after_provider_restart_between_calls(provider, provider_call):
    pc = provider_call(provider.endpoint)
    ok_response(pc.call({"method": "Version"}))
    provider.stop()
    provider.start()
    ok_response(pc.call({"method": "Version"}))
    ok_response(pc.call(mount_cmd()))


def test_provider_replaced_by_a_new_process(workdir, provider_proto, provider_call):
    """A provider pod restart: the old server is gone for good and a different
    one listens on the same path."""
    path = workdir / "p.sock"
    first = FakeProvider(path).start()
    try:
        pc = provider_call(first.endpoint)
        ok_response(pc.call({"method": "Version"}))
    finally:
        first.stop()
    second = FakeProvider(path)
    second.version = ("v1alpha1", "second", "2")
    second.start()
    try:
        resp = ok_response(pc.call({"method": "Version"}))
        assert field(resp, "runtime_name") == "second"
    finally:
        second.stop()


def test_slow_call_does_not_block_later_deadline_handling(provider, provider_call):
    """Two timeouts in a row, then success: deadlines are per call."""
    provider.delay = 30.0
    pc = provider_call(provider.endpoint)
    failure(pc.call(mount_cmd(timeout_ms=200)), "DEADLINE_EXCEEDED")
    failure(pc.call({"method": "Version", "timeout_ms": 200}), "DEADLINE_EXCEEDED")
    provider.delay = 0
    ok_response(pc.call({"method": "Version"}))


# ---- :authority


def test_authority_is_localhost(workdir, provider_call):
    from h2_provider import H2RecordingProvider

    p = H2RecordingProvider(workdir / "h2.sock").start()
    try:
        pc = provider_call(p.endpoint)
        ok_response(pc.call({"method": "Version"}))
        ok_response(pc.call(mount_cmd()))
        assert not p.errors, p.errors
        lists = p.header_lists()
        assert len(lists) == 2
        for hdrs in lists:
            pseudo = [(k, v) for k, v in hdrs if k.startswith(":")]
            assert [v for k, v in pseudo if k == ":authority"] == ["localhost"], hdrs
            assert ("content-type", "application/grpc") in hdrs or any(
                k == "content-type" and v.startswith("application/grpc") for k, v in hdrs), hdrs
            assert ("te", "trailers") in hdrs, hdrs
        assert dict(lists[0])[":path"] == "/v1alpha1.CSIDriverProvider/Version"
        assert dict(lists[1])[":path"] == "/v1alpha1.CSIDriverProvider/Mount"
    finally:
        p.stop()


def test_authority_flag_overrides(workdir, provider_call):
    from h2_provider import H2RecordingProvider

    p = H2RecordingProvider(workdir / "h2.sock").start()
    try:
        pc = provider_call(p.endpoint, "--authority", "provider.internal")
        ok_response(pc.call({"method": "Version"}))
        [hdrs] = p.header_lists()
        assert dict(hdrs)[":authority"] == "provider.internal"
    finally:
        p.stop()
