"""NodePublishVolume / NodeUnpublishVolume end to end: real tmpfs mounts, a real
grpcio provider on a unix socket, SecretProviderClasses from a directory."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from mounting import (TOKENS_KEY, mount_of, publish_request, read_volume, residue, target_path,
                      unpublish_request, write_spc)
from support import wait_until

T = 20  # kubelet-like per-call deadline for these tests, seconds

TOKENS = {"vault": {"token": "eyJhbGciOiJSUzI1NiJ9.sa-token-value", "expirationTimestamp": "2026-11-27T10:00:00Z"}}


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        fn(*args, **kwargs)
    return ei.value


# ---- the happy path


def test_publish_mounts_tmpfs_and_writes_provider_files(mount_env, csi):
    env = mount_env
    env.provider.files = [("db/password", 0o400, b"hunter2"), ("api-key", 0, b"k" * 256)]
    env.provider.object_versions = [("db/password", "v1"), ("api-key", "v7")]
    env.start()
    target = target_path(env.root, "uid-1")
    env.node().NodePublishVolume(publish_request(csi, target, pod_uid="uid-1", tokens=TOKENS), timeout=T)

    fstype, opts = mount_of(target)
    assert fstype == "tmpfs"
    for flag in ("nosuid", "nodev", "noexec"):
        assert flag in opts.split(","), opts
    assert read_volume(target) == {"db/password": (0o400, b"hunter2"), "api-key": (0o644, b"k" * 256)}
    # kubelet's atomic-writer layout.
    assert os.path.islink(f"{target}/..data")
    assert os.readlink(f"{target}/api-key") == "..data/api-key"
    assert os.readlink(f"{target}/db") == "..data/db"


def test_a_standalone_driver_never_maps_libcurl(mount_env, csi):
    """libcurl (and its TLS, Kerberos, LDAP, ... libraries) is loaded on the first HTTP
    request; a standalone driver sends none, so not even a publish maps it."""
    env = mount_env
    env.start()
    target = target_path(env.root, "uid-nocurl")
    env.node().NodePublishVolume(publish_request(csi, target, pod_uid="uid-nocurl"), timeout=T)
    assert read_volume(target) == {"secret.txt": (0o644, b"value")}
    maps = Path(f"/proc/{env.driver.proc.pid}/maps").read_text()
    assert "libcurl" not in maps


def test_provider_request_is_built_like_upstream(mount_env, csi):
    env = mount_env
    env.start()
    target = target_path(env.root, "uid-2")
    req = publish_request(csi, target, pod_uid="uid-2", tokens=TOKENS,
                          extra_context={"region": "us-east-1"}, secrets={"username": "u", "password": "p"})
    env.node().NodePublishVolume(req, timeout=T)

    (mount,) = env.provider.calls("Mount")
    attrs = json.loads(mount.attributes)
    # Class parameters overlaid by the volume context: the context wins.
    assert attrs["objects"] == "secret.txt"
    assert attrs["region"] == "us-east-1"
    assert attrs["secretProviderClass"] == "my-spc"
    assert attrs["csi.storage.k8s.io/pod.uid"] == "uid-2"
    assert json.loads(attrs[TOKENS_KEY]) == TOKENS
    assert json.loads(mount.secrets) == {"username": "u", "password": "p"}
    assert mount.permission == "420"
    assert mount.target_path == target
    assert list(mount.current_object_version) == []


def test_tokens_in_the_secrets_map_move_to_attributes_and_empty_secrets_are_null(mount_env, csi):
    env = mount_env
    env.start()
    target = target_path(env.root, "uid-3")
    req = publish_request(csi, target, pod_uid="uid-3", secrets={TOKENS_KEY: json.dumps(TOKENS)})
    env.node().NodePublishVolume(req, timeout=T)
    (mount,) = env.provider.calls("Mount")
    assert json.loads(json.loads(mount.attributes)[TOKENS_KEY]) == TOKENS
    assert mount.secrets == "null"


def test_unpublish_unmounts_removes_and_is_idempotent(mount_env, csi):
    env = mount_env
    env.start()
    node = env.node()
    target = target_path(env.root, "uid-4")
    node.NodePublishVolume(publish_request(csi, target, pod_uid="uid-4"), timeout=T)
    assert mount_of(target) is not None
    calls = len(env.provider.requests)

    node.NodeUnpublishVolume(unpublish_request(csi, target, "uid-4"), timeout=T)
    assert residue(target) == []
    node.NodeUnpublishVolume(unpublish_request(csi, target, "uid-4"), timeout=T)  # again: still fine
    # A target the driver never saw.
    node.NodeUnpublishVolume(unpublish_request(csi, target_path(env.root, "never"), "never"), timeout=T)
    assert len(env.provider.requests) == calls, "unpublish must not call the provider"


def test_unpublish_works_without_the_provider_and_after_a_driver_restart(mount_env, csi):
    env = mount_env
    d = env.start()
    target = target_path(env.root, "uid-5")
    env.node().NodePublishVolume(publish_request(csi, target, pod_uid="uid-5"), timeout=T)
    assert d.stop() == 0
    env.provider.stop()
    env.start()
    env.node().NodeUnpublishVolume(unpublish_request(csi, target, "uid-5"), timeout=T)
    assert residue(target) == []


# ---- failures leave nothing behind


def test_missing_class_is_not_found_with_name_and_namespace(mount_env, csi):
    env = mount_env
    env.start()
    target = target_path(env.root, "uid-6")
    e = rpc_error(env.node().NodePublishVolume,
                  publish_request(csi, target, spc="nope", namespace="team-a", pod_uid="uid-6"), timeout=T)
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert '"nope"' in e.details() and '"team-a"' in e.details(), e.details()
    assert residue(target) == []


def test_provider_without_a_socket_is_unavailable(mount_env, csi):
    env = mount_env
    env.provider.stop()
    env.start()
    target = target_path(env.root, "uid-7")
    e = rpc_error(env.node().NodePublishVolume, publish_request(csi, target, pod_uid="uid-7"), timeout=T)
    assert e.code() == grpc.StatusCode.UNAVAILABLE, e
    assert "fake" in e.details()
    assert residue(target) == []


def test_provider_error_code_is_internal_carrying_the_code(mount_env, csi):
    env = mount_env
    env.provider.mount_error = "AccessDenied"
    env.start()
    target = target_path(env.root, "uid-8")
    e = rpc_error(env.node().NodePublishVolume, publish_request(csi, target, pod_uid="uid-8"), timeout=T)
    assert e.code() == grpc.StatusCode.INTERNAL
    assert "AccessDenied" in e.details()
    assert residue(target) == []


@pytest.mark.parametrize("bad_path", ["../escape", "/etc/evil", "a//b", "..data", "./x", "a/../../b", ""])
def test_hostile_paths_are_refused_whole(mount_env, csi, bad_path):
    env = mount_env
    env.provider.files = [("good.txt", 0, b"fine"), (bad_path, 0, b"evil")]
    env.start()
    target = target_path(env.root, "uid-9")
    e = rpc_error(env.node().NodePublishVolume, publish_request(csi, target, pod_uid="uid-9"), timeout=T)
    assert e.code() == grpc.StatusCode.INTERNAL, e
    assert residue(target) == []
    assert not (env.root / "escape").exists() and not os.path.exists("/etc/evil")


def test_no_object_versions_and_bad_modes_are_refused(mount_env, csi):
    env = mount_env
    env.start()
    node = env.node()
    env.provider.object_versions = []
    target = target_path(env.root, "uid-10")
    e = rpc_error(node.NodePublishVolume, publish_request(csi, target, pod_uid="uid-10"), timeout=T)
    assert e.code() == grpc.StatusCode.INTERNAL and "object versions" in e.details()
    assert residue(target) == []
    env.provider.object_versions = [("secret.txt", "v1")]
    env.provider.files = [("secret.txt", 0o170644, b"x")]
    e = rpc_error(node.NodePublishVolume, publish_request(csi, target, pod_uid="uid-10"), timeout=T)
    assert e.code() == grpc.StatusCode.INTERNAL and "mode" in e.details()
    assert residue(target) == []


def test_provider_grpc_error_is_reported_and_cleaned_up(mount_env, csi):
    env = mount_env
    env.provider.error_code = grpc.StatusCode.PERMISSION_DENIED
    env.provider.error_message = "role cannot read secret"
    env.start()
    target = target_path(env.root, "uid-11")
    e = rpc_error(env.node().NodePublishVolume, publish_request(csi, target, pod_uid="uid-11"), timeout=T)
    assert e.code() == grpc.StatusCode.INTERNAL
    assert "PERMISSION_DENIED" in e.details() and "role cannot read secret" in e.details()
    assert residue(target) == []


def test_slow_provider_past_the_deadline_leaves_nothing(mount_env, csi):
    env = mount_env
    env.provider.delay = 30
    env.start()
    target = target_path(env.root, "uid-12")
    e = rpc_error(env.node().NodePublishVolume, publish_request(csi, target, pod_uid="uid-12"), timeout=2)
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The driver gave the provider less than kubelet's deadline, so it has cleaned up by now or very soon.
    wait_until(lambda: residue(target) == [], 10, "the failed mount to be cleaned up")
    env.provider.delay = 0
    env.node().NodePublishVolume(publish_request(csi, target, pod_uid="uid-12"), timeout=T)
    assert read_volume(target) == {"secret.txt": (0o644, b"value")}


# ---- deadlines: only grpc-timeout counts

SPOOF = "x-h2-grpc-timeout"  # the name the server once read a deadline from


def test_spoofed_deadline_header_does_not_cut_a_call_short(mount_env, csi):
    """A client's own `x-h2-grpc-timeout` is not a deadline: with no
    grpc-timeout, the driver gives the provider its default budget."""
    env = mount_env
    env.start()
    target = target_path(env.root, "uid-12s")
    env.node().NodePublishVolume(publish_request(csi, target, pod_uid="uid-12s"), metadata=((SPOOF, "1n"),))
    assert read_volume(target) == {"secret.txt": (0o644, b"value")}
    [left] = env.provider.deadlines("Mount")
    assert left > T, f"the provider got {left:.3f}s: the spoofed header set the budget"


@pytest.mark.parametrize("spoof", ["1n", "99999999H"])
def test_spoofed_deadline_header_neither_shortens_nor_extends_grpc_timeout(mount_env, csi, spoof):
    """The spoofed header goes first (raw HTTP/2), grpc-timeout second: the
    provider's budget comes from grpc-timeout alone (a tenth less, the driver's margin)."""
    from h2_client import raw_unary

    env = mount_env
    env.start()
    target = target_path(env.root, "uid-12" + spoof)
    req = publish_request(csi, target, pod_uid="uid-12" + spoof)
    res = raw_unary(str(env.driver.socket_path), "/csi.v1.Node/NodePublishVolume", req.SerializeToString(),
                    extra_headers=[(SPOOF, spoof), ("grpc-timeout", "10S")], wait=T)
    assert res.ended and res.status() == "0", (res.headers, res.trailers)
    assert read_volume(target) == {"secret.txt": (0o644, b"value")}
    [left] = env.provider.deadlines("Mount")
    assert 5 < left <= 10, f"the provider got {left:.3f}s for a 10 s grpc-timeout"


def test_oversized_provider_response_is_refused(mount_env, csi):
    env = mount_env
    env.provider.pad_bytes = 2 << 20
    env.start("--max-call-recv-msg-size", str(1 << 20))
    target = target_path(env.root, "uid-13")
    e = rpc_error(env.node().NodePublishVolume, publish_request(csi, target, pod_uid="uid-13"), timeout=T)
    assert e.code() == grpc.StatusCode.INTERNAL, e
    assert "RESOURCE_EXHAUSTED" in e.details()
    assert residue(target) == []


# ---- provider restarts


def test_provider_restart_between_publishes_reconnects(mount_env, csi):
    env = mount_env
    env.start()
    node = env.node()
    a, b = target_path(env.root, "uid-14a"), target_path(env.root, "uid-14b")
    node.NodePublishVolume(publish_request(csi, a, pod_uid="uid-14a"), timeout=T)
    env.provider.stop()
    e = rpc_error(node.NodePublishVolume, publish_request(csi, b, pod_uid="uid-14b"), timeout=T)
    assert e.code() == grpc.StatusCode.UNAVAILABLE
    assert residue(b) == []
    env.provider.start()
    node.NodePublishVolume(publish_request(csi, b, pod_uid="uid-14b"), timeout=T)
    assert read_volume(b) == {"secret.txt": (0o644, b"value")}


def test_provider_moved_to_another_searched_directory_is_found_again(mount_env, csi):
    """The socket path is looked up once and kept while calls work; a provider that
    moves (its old socket gone) is looked up again after the failed connect, within
    the same publish."""
    from fake_provider import FakeProvider

    env = mount_env
    extra = env.root / "more-providers"
    extra.mkdir()
    env.start("--additional-provider-volume-paths", str(extra))
    node = env.node()
    a, b = target_path(env.root, "uid-14c"), target_path(env.root, "uid-14d")
    node.NodePublishVolume(publish_request(csi, a, pod_uid="uid-14c"), timeout=T)
    env.provider.stop()
    moved = FakeProvider(extra / "fake.sock")
    moved.files = [("secret.txt", 0, b"moved")]
    moved.start()
    try:
        node.NodePublishVolume(publish_request(csi, b, pod_uid="uid-14d"), timeout=T)
        assert read_volume(b) == {"secret.txt": (0o644, b"moved")}
        assert len(moved.calls("Mount")) == 1
    finally:
        moved.stop()


# ---- republish and rotation


def test_republish_without_rotation_does_not_call_the_provider(mount_env, csi):
    env = mount_env
    env.start()
    target = target_path(env.root, "uid-15")
    req = publish_request(csi, target, pod_uid="uid-15")
    env.node().NodePublishVolume(req, timeout=T)
    env.provider.files = [("secret.txt", 0, b"changed")]
    for _ in range(3):
        env.node().NodePublishVolume(req, timeout=T)
    assert len(env.provider.calls("Mount")) == 1
    assert read_volume(target) == {"secret.txt": (0o644, b"value")}


def sleep_until(t: float) -> None:
    """Waits until time.monotonic() reaches `t`: for tests where time passing
    is itself the condition (a rotation interval running out)."""
    while (left := t - time.monotonic()) > 0:
        time.sleep(left)


# The driver's clock and this process's may run at slightly different rates
# (CLOCK_MONOTONIC is slewed by NTP, at most 500 ppm): waits past an interval add this.
CLOCK_SLACK = 0.05


def test_rotation_refreshes_when_due_by_last_fetch(mount_env, csi):
    """A republish fetches again once the interval has passed since the last
    fetch, not before. No assumption about how fast calls are: the driver
    fetches inside the call that triggers it, so "not due" is asserted for a
    republish that ended less than the interval after the fetching call
    began, and "due" once the interval has passed since it returned."""
    interval = 3.0  # a generous bound for one local republish
    env = mount_env
    env.start("--enable-secret-rotation=true", "--rotation-poll-interval", "3s")
    node = env.node()
    target = target_path(env.root, "uid-16")
    req = publish_request(csi, target, pod_uid="uid-16", tokens=TOKENS)

    def fetching_publish() -> tuple[float, float]:
        began = time.monotonic()
        node.NodePublishVolume(req, timeout=T)
        return began, time.monotonic()

    def republish_before_due(fetch_began: float, mounts: int) -> None:
        node.NodePublishVolume(req, timeout=T)
        took = time.monotonic() - fetch_began
        assert took < interval, f"a republish took {took:.1f}s, past the {interval}s interval: cannot check 'not due'"
        assert len(env.provider.calls("Mount")) == mounts

    began, fetched = fetching_publish()
    republish_before_due(began, 1)

    env.provider.files = [("secret.txt", 0, b"rotated")]
    env.provider.object_versions = [("secret.txt", "v2")]
    sleep_until(fetched + interval + CLOCK_SLACK)
    began, fetched = fetching_publish()
    mounts = env.provider.calls("Mount")
    assert len(mounts) == 2
    # The refresh tells the provider what is mounted now.
    assert [(v.id, v.version) for v in mounts[1].current_object_version] == [("secret.txt", "v1")]
    assert read_volume(target) == {"secret.txt": (0o644, b"rotated")}
    # Not due again until the interval has passed since this fetch, however
    # long ago the first publish was.
    republish_before_due(began, 2)


def test_failed_refresh_answers_success_and_keeps_content(mount_env, csi):
    env = mount_env
    # No backoff to speak of: each republish below must try the provider again
    # (test_rotation_gate.py covers republishes during a backoff).
    env.start("--enable-secret-rotation", "--rotation-poll-interval", "200ms", "--rotation-backoff-base=1ns")
    node = env.node()
    target = target_path(env.root, "uid-17")
    req = publish_request(csi, target, pod_uid="uid-17")
    node.NodePublishVolume(req, timeout=T)
    # Due from here on: a failed refresh leaves the last fetch where it was.
    sleep_until(time.monotonic() + 0.2 + CLOCK_SLACK)
    for breakage in ("error_code", "mount_error", "stopped", "hostile"):
        if breakage == "error_code":
            env.provider.error_code = grpc.StatusCode.UNAVAILABLE
        elif breakage == "mount_error":
            env.provider.error_code = None
            env.provider.mount_error = "Throttled"
        elif breakage == "stopped":
            env.provider.mount_error = ""
            env.provider.stop()
        else:
            env.provider.start()
            env.provider.files = [("../escape", 0, b"evil")]
        # The driver's rotation timer may have refreshed the volume just before the
        # breakage; its refreshes fail from now on, so the volume is due again after one
        # interval, and the republish below must refresh.
        sleep_until(time.monotonic() + 0.2 + CLOCK_SLACK)
        calls = len(env.provider.calls("Mount"))
        node.NodePublishVolume(req, timeout=T)  # success, whatever broke
        assert read_volume(target) == {"secret.txt": (0o644, b"value")}, breakage
        assert mount_of(target) is not None
        if breakage != "stopped":
            assert len(env.provider.calls("Mount")) > calls, f"{breakage}: the refresh never reached the provider"


# ---- concurrency


def test_concurrent_publish_and_unpublish_of_one_target_end_consistent(mount_env, csi):
    env = mount_env
    env.provider.delay = 0.05
    env.start()
    node = env.node()
    target = target_path(env.root, "uid-18")
    pub = publish_request(csi, target, pod_uid="uid-18")
    unpub = unpublish_request(csi, target, "uid-18")
    with futures.ThreadPoolExecutor(16) as pool:
        fs = [pool.submit(node.NodePublishVolume if i % 3 else node.NodeUnpublishVolume,
                          pub if i % 3 else unpub, timeout=T) for i in range(60)]
        for f in fs:
            f.result()
    # Whatever order they ran in, the target is either a complete volume or gone.
    if mount_of(target) is not None:
        assert read_volume(target) == {"secret.txt": (0o644, b"value")}
    else:
        assert residue(target) == []
    node.NodeUnpublishVolume(unpub, timeout=T)
    assert residue(target) == []


def test_200_volumes_published_concurrently(mount_env, csi):
    env = mount_env
    env.provider.files = [("a", 0, b"1" * 256), ("b", 0, b"2" * 256), ("c", 0, b"3" * 256)]
    env.provider.object_versions = [("a", "1"), ("b", "1"), ("c", "1")]
    env.start()
    node = env.node()
    targets = [target_path(env.root, f"uid-many-{i}") for i in range(200)]
    with futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda it: node.NodePublishVolume(
            publish_request(csi, it[1], pod_uid=f"uid-many-{it[0]}"), timeout=60), enumerate(targets)))
    for t in targets:
        assert mount_of(t)[0] == "tmpfs"
        assert read_volume(t) == {"a": (0o644, b"1" * 256), "b": (0o644, b"2" * 256), "c": (0o644, b"3" * 256)}
    with futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda it: node.NodeUnpublishVolume(
            unpublish_request(csi, it[1], f"uid-many-{it[0]}"), timeout=60), enumerate(targets)))
    assert all(residue(t) == [] for t in targets)


# ---- classes from the directory


def test_class_file_changes_are_seen_by_the_next_publish(mount_env, csi):
    env = mount_env
    env.start()
    node = env.node()
    write_spc(env.spcs, "late-spc", parameters={"objects": "first"})
    t1 = target_path(env.root, "uid-19a")
    node.NodePublishVolume(publish_request(csi, t1, spc="late-spc", pod_uid="uid-19a"), timeout=T)
    write_spc(env.spcs, "late-spc", parameters={"objects": "second"})
    t2 = target_path(env.root, "uid-19b")
    node.NodePublishVolume(publish_request(csi, t2, spc="late-spc", pod_uid="uid-19b"), timeout=T)
    objects = [json.loads(m.attributes)["objects"] for m in env.provider.calls("Mount")]
    assert objects == ["first", "second"]


def test_invalid_class_is_failed_precondition_naming_the_field(mount_env, csi):
    env = mount_env
    (env.spcs / "bad.yaml").write_text(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\n"
        "metadata: {name: bad-spc, namespace: default}\nspec:\n  provider: fake\n  parameters:\n    objects: [1, 2]\n")
    write_spc(env.spcs, "dup", file_name="a.yaml")
    write_spc(env.spcs, "dup", file_name="b.yaml")
    env.start()
    target = target_path(env.root, "uid-20")
    e = rpc_error(env.node().NodePublishVolume, publish_request(csi, target, spc="dup", pod_uid="uid-20"), timeout=T)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "a.yaml" in e.details() and "b.yaml" in e.details()
    e = rpc_error(env.node().NodePublishVolume, publish_request(csi, target, spc="bad-spc", pod_uid="uid-20"), timeout=T)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "spec.parameters.objects" in e.details() and "bad.yaml" in e.details(), e.details()
    assert residue(target) == []


def test_driver_restart_adopts_mounted_volumes_and_refreshes_them(mount_env, csi):
    env = mount_env
    d = env.start("--enable-secret-rotation", "--rotation-poll-interval", "1h")
    target = target_path(env.root, "uid-21")
    req = publish_request(csi, target, pod_uid="uid-21")
    env.node().NodePublishVolume(req, timeout=T)
    assert d.stop(signal.SIGTERM) == 0
    assert mount_of(target) is not None, "a driver restart must not unmount pod volumes"
    env.provider.files = [("secret.txt", 0, b"after-restart")]
    calls = sum(1 for m, _ in env.provider.requests if m == "Mount")
    d = env.start("--enable-secret-rotation", "--rotation-poll-interval", "1h")
    env.node().NodePublishVolume(req, timeout=T)
    # Its record (--state-dir) says when it was fetched: not due yet, as if never restarted.
    assert read_volume(target) == {"secret.txt": (0o644, b"value")}
    assert sum(1 for m, _ in env.provider.requests if m == "Mount") == calls
    assert d.stop(signal.SIGTERM) == 0
    # Without records the new process does not know when it was fetched: the first republish refreshes.
    env.start("--enable-secret-rotation", "--rotation-poll-interval", "1h", "--state-dir", "")
    env.node().NodePublishVolume(req, timeout=T)
    assert read_volume(target) == {"secret.txt": (0o644, b"after-restart")}
    env.node().NodeUnpublishVolume(unpublish_request(csi, target, "uid-21"), timeout=T)
    assert residue(target) == []


def test_readers_never_see_a_mix_of_old_and_new_files(mount_env, csi):
    """Two files always change together; a reader that resolves ..data once (as
    a consistent reader must) never sees one file from one version and one from another."""
    env = mount_env
    env.start("--enable-secret-rotation", "--rotation-poll-interval", "1ns")  # every republish refreshes
    node = env.node()
    target = target_path(env.root, "uid-22")
    req = publish_request(csi, target, pod_uid="uid-22")

    def set_version(n: int) -> None:
        v = f"version-{n}".encode() * 50
        env.provider.files = [("one", 0, v), ("dir/two", 0, v)]
        env.provider.object_versions = [("one", str(n)), ("two", str(n))]

    set_version(0)
    node.NodePublishVolume(req, timeout=T)
    stop = threading.Event()
    seen: set[bytes] = set()
    mixes: list[tuple[bytes, bytes]] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                d = os.open(f"{target}/..data", os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue
            try:
                a = os.read(fd := os.open("one", os.O_RDONLY, dir_fd=d), 1 << 16); os.close(fd)
                b = os.read(fd := os.open("dir/two", os.O_RDONLY, dir_fd=d), 1 << 16); os.close(fd)
            except FileNotFoundError:
                continue  # that version was replaced and removed meanwhile: not a mix
            finally:
                os.close(d)
            seen.add(a)
            if a != b:
                mixes.append((a[:20], b[:20]))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for n in range(1, 150):
            set_version(n)
            node.NodePublishVolume(req, timeout=T)
    finally:
        stop.set()
        t.join()
    assert mixes == []
    assert len(seen) > 1, "the reader never ran alongside an update"
    assert read_volume(target)["one"][1] == b"version-149" * 50


def test_provider_health_check_calls_version_and_logs_failures(mount_env, csi):
    env = mount_env
    d = env.start("--provider-health-check", "--provider-health-check-interval", "100ms")
    wait_until(lambda: len(env.provider.calls("Version")) >= 2, 15, "periodic Version calls")
    assert env.provider.calls("Version")[0].version == "v1alpha1"
    env.provider.error_code = grpc.StatusCode.INTERNAL
    wait_until(lambda: "provider health check failed" in d.stderr(), 15, "a logged health-check failure")
    env.provider.error_code = None
    wait_until(lambda: "provider healthy again" in d.stderr(), 15, "a logged recovery")


def test_missing_parents_are_created_and_removed_again_on_failure(mount_env, csi):
    env = mount_env
    env.start()
    node = env.node()
    base = env.root / "pods" / "uid-23"
    target = str(base / "volumes" / "kubernetes.io~csi" / "v" / "mount")
    env.provider.mount_error = "AccessDenied"
    e = rpc_error(node.NodePublishVolume, publish_request(csi, target, pod_uid="uid-23"), timeout=T)
    assert e.code() == grpc.StatusCode.INTERNAL
    assert not base.exists(), "directories made for a failed mount must go with it"
    env.provider.mount_error = ""
    node.NodePublishVolume(publish_request(csi, target, pod_uid="uid-23"), timeout=T)
    assert read_volume(target) == {"secret.txt": (0o644, b"value")}
    node.NodeUnpublishVolume(unpublish_request(csi, target, "uid-23"), timeout=T)
    assert residue(target) == []


def test_unpublish_never_follows_a_symlink_at_the_target(mount_env, csi, tmp_path):
    env = mount_env
    env.start()
    node = env.node()
    # Another volume, mounted for real; then a link to it where a target would be.
    other = target_path(env.root, "uid-24")
    node.NodePublishVolume(publish_request(csi, other, pod_uid="uid-24"), timeout=T)
    link = target_path(env.root, "uid-25")
    os.symlink(other, link)
    e = rpc_error(node.NodeUnpublishVolume, unpublish_request(csi, link, "uid-25"), timeout=T)
    assert e.code() == grpc.StatusCode.INTERNAL and "symbolic link" in e.details()
    assert mount_of(other) is not None, "the link's destination must stay mounted"
    assert read_volume(other) == {"secret.txt": (0o644, b"value")}
    os.unlink(link)


def test_without_rotation_a_restarted_driver_leaves_content_alone(mount_env, csi):
    env = mount_env
    d = env.start()
    target = target_path(env.root, "uid-26")
    req = publish_request(csi, target, pod_uid="uid-26")
    env.node().NodePublishVolume(req, timeout=T)
    assert d.stop() == 0
    env.provider.files = [("secret.txt", 0, b"changed-in-store")]
    env.start()
    env.node().NodePublishVolume(req, timeout=T)
    assert read_volume(target) == {"secret.txt": (0o644, b"value")}
    assert len(env.provider.calls("Mount")) == 1
