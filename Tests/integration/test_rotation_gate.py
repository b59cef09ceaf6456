"""Rotation at node scale against the reference provider (real tmpfs, grpcio as kubelet):
a throttling store makes refreshes back off while first mounts keep going through, and
everything recovers after; with --rotation-coalesce-window, refreshes of one identity
share one provider call (counted by the provider itself), never across namespaces."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubeapi_fixture import wait_for
from mounting import mount_of, publish_request, read_volume, target_path, unpublish_request, write_spc
from support import free_tcp_port, require_executable
from test_metrics import http_get, parse, value
from test_reference_provider import ReferenceProvider, reference_provider_bin

SA_KEY = "csi.storage.k8s.io/serviceAccount.name"
OBJECTS = json.dumps([{"objectName": "db"}])
THROTTLED = {"fault.throttleEvery": "1s", "fault.throttleFor": "1s", "fault.throttleCode": "ThrottlingException"}


@pytest.fixture
def ref_env(mount_env, provider_proto):
    """mount_env plus a csi-reference-provider named "reference" in the driver's provider directory."""
    binary = require_executable(reference_provider_bin(), "csi-reference-provider", "REFERENCE_PROVIDER_BIN")
    ref = ReferenceProvider(binary, mount_env.providers, provider_proto, [], "reference").wait_ready()
    (ref.data_dir / "db").write_bytes(b"v1")
    mount_env.ref = ref
    try:
        yield mount_env
    finally:
        ref.kill()


def stats(env) -> dict:
    return env.ref.stats()


def identity_calls(env, identity: str) -> int:
    return stats(env).get("mount_calls_by_identity", {}).get(identity, 0)


def publish(env, csi, uid: str, *, spc: str, sa: str, namespace: str = "default"):
    target = target_path(env.root, uid)
    env.node().NodePublishVolume(
        publish_request(csi, target, spc=spc, namespace=namespace, pod=f"pod-{uid}", pod_uid=uid,
                        extra_context={SA_KEY: sa}), timeout=30)
    return target


def publish_many(env, csi, specs) -> list[str]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda s: publish(env, csi, s[0], spc=s[1], sa=s[2], namespace=s[3]), specs))


def stable_calls(env, settle: float = 1.5) -> dict:
    """The provider's per-identity call counts once they stop moving for `settle` seconds
    (its stats file is rewritten each second while something changes)."""
    last = None
    since = time.monotonic()
    deadline = since + 20
    while time.monotonic() < deadline:
        now = stats(env).get("mount_calls_by_identity", {})
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            return now
        time.sleep(0.1)
    raise AssertionError(f"call counts never settled: {last}")


def test_throttled_refreshes_back_off_first_mounts_go_through_and_all_recover(ref_env, csi):
    env = ref_env
    port = free_tcp_port()
    write_spc(env.spcs, "hot", provider="reference", parameters={"objects": OBJECTS})
    write_spc(env.spcs, "cold", provider="reference", parameters={"objects": OBJECTS})
    env.start("--enable-secret-rotation", "--rotation-poll-interval=1s", "--provider-max-concurrency=2",
              f"--metrics-addr=127.0.0.1:{port}")
    hot = publish_many(env, csi, [(f"hot-{i}", "hot", "hot-sa", "default") for i in range(10)])
    assert all(read_volume(t)["db"][1] == b"v1" for t in hot)

    # The store starts throttling this class's calls.
    write_spc(env.spcs, "hot", provider="reference", parameters={"objects": OBJECTS, **THROTTLED})
    wait_for(lambda: stats(env)["mount_errors"].get("ThrottlingException", 0) >= 1, timeout=20,
             what="a throttled refresh")
    first_throttled = time.monotonic()

    # Backoff: the first round's failures (at most one per volume, from calls already
    # under way) and then nothing until the backoff ends (5 s, then 10 s). Without
    # backoff: ten calls a second.
    settled = stable_calls(env, settle=1.2)
    elapsed = time.monotonic() - first_throttled
    throttled = settled.get("default/hot-sa", 0) - 10  # less the ten first mounts
    rounds = 1 + (elapsed >= 5) + (elapsed >= 15)
    assert 1 <= throttled <= 10 * rounds + 2, f"{throttled} calls in {elapsed:.1f}s while throttled: no backoff"

    # A republish during the backoff calls nothing and keeps the content (success to kubelet).
    _, samples = parse(http_get(port, "/metrics")[2])
    assert value(samples, "secrets_store_rotation_volumes_in_backoff") == 10
    assert value(samples, "secrets_store_rotation_volumes_stale") >= 1
    before = identity_calls(env, "default/hot-sa")
    publish(env, csi, "hot-0", spc="hot", sa="hot-sa")
    assert read_volume(hot[0])["db"][1] == b"v1"
    if time.monotonic() - first_throttled < 4:  # still well inside the first backoff
        time.sleep(1.2)  # one stats write
        assert identity_calls(env, "default/hot-sa") == before, "a republish during the backoff called the store"

    # First mounts of another identity go through while the store throttles the refreshes
    # (and the gate, two calls at a time, holds the hot volumes' retries behind them).
    cold = publish_many(env, csi, [(f"cold-{i}", "cold", "cold-sa", "default") for i in range(20)])
    assert all(read_volume(t)["db"][1] == b"v1" for t in cold)

    # The store recovers, with a new value: every volume gets it once the backoff ends.
    (env.ref.data_dir / "db").write_bytes(b"v2")
    write_spc(env.spcs, "hot", provider="reference", parameters={"objects": OBJECTS})
    wait_for(lambda: all(read_volume(t)["db"][1] == b"v2" for t in hot + cold), timeout=40,
             what="every volume refreshed after the throttling")
    def recovered():
        _, s = parse(http_get(port, "/metrics")[2])
        return (value(s, "secrets_store_rotation_volumes_in_backoff") == 0
                and value(s, "secrets_store_rotation_volumes_stale") == 0)
    wait_for(recovered, timeout=20, what="no volume in backoff or stale")
    _, samples = parse(http_get(port, "/metrics")[2])
    first_mounts = value(samples, "secrets_store_provider_mount_calls_total", provider="reference", priority="first_mount")
    assert first_mounts == 30
    assert value(samples, "secrets_store_provider_mount_calls_total", provider="reference", priority="refresh") > 0
    # Zero failed first mounts; the throttled refreshes show as reconcile errors.
    assert not [k for k in samples if k[0] == "node_publish_error_total" and samples[k] > 0
                and dict(k[1]).get("error_type") != "ThrottlingException"]
    assert sum(v for (n, _), v in samples.items() if n == "rotation_reconcile_error_total") >= 1


@pytest.mark.parametrize("loops", [1, 2])
def test_coalescing_makes_one_call_per_identity_per_interval(ref_env, csi, loops):
    env = ref_env
    write_spc(env.spcs, "shared", provider="reference", parameters={"objects": OBJECTS})
    port = free_tcp_port()
    # With two loops each identity's volumes are sharded over both (by target path), and
    # its refreshes reach the one coalescer from either loop.
    env.start("--enable-secret-rotation", "--rotation-poll-interval=2s", "--rotation-coalesce-window=1500ms",
              f"--metrics-addr=127.0.0.1:{port}", f"--event-loops={loops}")
    targets = publish_many(env, csi, [(f"c-{i}", "shared", f"sa-{i % 10}", "default") for i in range(200)])
    # First mounts never share: one call each.
    _, samples = parse(http_get(port, "/metrics")[2])
    assert value(samples, "secrets_store_provider_mount_calls_total", provider="reference", priority="first_mount") == 200
    # A change reaches every volume through the shared calls.
    (env.ref.data_dir / "db").write_bytes(b"v2")
    wait_for(lambda: all(read_volume(t)["db"][1] == b"v2" for t in targets), timeout=30,
             what="the change in every volume")
    # Steady state: each identity's volumes come due together and share one call.
    time.sleep(2.5)
    start = stats(env)["mount_calls_by_identity"]
    t0 = time.monotonic()
    time.sleep(6.2)
    end = stats(env)["mount_calls_by_identity"]
    intervals = (time.monotonic() - t0) / 2
    per_identity = {k: end.get(k, 0) - start.get(k, 0) for k in end}
    assert sorted(per_identity) == [f"default/sa-{i}" for i in range(10)]
    for identity, calls in per_identity.items():
        # About one call per interval: the stats file is written once a second, so each
        # end of the measurement may be off by one call, and an identity whose volumes
        # still form two groups (they merge as their schedules drift) may make one more.
        # 20 volumes would make 20 calls per interval without coalescing.
        assert intervals - 1.5 <= calls <= intervals + 2.5, f"{identity}: {calls} calls in {intervals:.1f} intervals"
    assert sum(per_identity.values()) <= 10 * (intervals + 1.5)
    assert all(read_volume(t)["db"][1] == b"v2" for t in targets)
    _, samples = parse(http_get(port, "/metrics")[2])
    assert value(samples, "secrets_store_rotation_coalesced_total", provider="reference") >= 19 * 10 * 2


def test_coalescing_never_merges_namespaces(ref_env, csi):
    env = ref_env
    for ns in ("ns-a", "ns-b"):
        write_spc(env.spcs, "same", provider="reference", parameters={"objects": OBJECTS}, namespace=ns)
    env.start("--enable-secret-rotation", "--rotation-poll-interval=1s", "--rotation-coalesce-window=800ms")
    publish_many(env, csi, [(f"{ns}-{i}", "same", "default", ns) for ns in ("ns-a", "ns-b") for i in range(5)])
    time.sleep(2.2)  # settle into the shared schedule
    start = stats(env)["mount_calls_by_identity"]
    t0 = time.monotonic()
    time.sleep(4.2)
    end = stats(env)["mount_calls_by_identity"]
    intervals = time.monotonic() - t0
    a = end.get("ns-a/default", 0) - start.get("ns-a/default", 0)
    b = end.get("ns-b/default", 0) - start.get("ns-b/default", 0)
    # Two calls per interval (one per namespace), never one for both; nor five per
    # namespace. Bounds as in the test above (stats written once a second; an interval
    # less its jitter is up to 10 % shorter than 1 s).
    for ns, calls in (("ns-a", a), ("ns-b", b)):
        assert intervals - 1.5 <= calls <= intervals + 2.5, f"{ns}: {calls} calls in {intervals:.1f} intervals"


def test_unpublish_ends_a_refresh_hung_in_the_provider(ref_env, csi):
    """A refresh waiting for a provider that never answers holds the volume; an unpublish
    ends that wait instead of queueing behind it for the refresh's whole budget, and
    leaves no mount and no target; a republish with new tokens does not wait for it either."""
    env = ref_env
    write_spc(env.spcs, "hang", provider="reference", parameters={"objects": OBJECTS})
    env.start("--enable-secret-rotation", "--rotation-poll-interval=1s")
    target = publish(env, csi, "hang-0", spc="hang", sa="hang-sa")
    assert read_volume(target)["db"][1] == b"v1"

    # From now on the store hangs every call of this class (ten minutes).
    write_spc(env.spcs, "hang", provider="reference", parameters={"objects": OBJECTS, "fault.latency": "600s"})
    wait_for(lambda: stats(env).get("in_flight", 0) >= 1, timeout=20, what="a refresh hung in the provider")

    # A republish with new tokens ends the wait of the refresh asking with the old ones
    # and asks again itself; that call hangs too, so it fails within kubelet's deadline,
    # kubelet gets success and the old content stays.
    tokens = {"vault": {"token": "new-token", "expirationTimestamp": "2099-01-01T00:00:00Z"}}
    env.node().NodePublishVolume(
        publish_request(csi, target, spc="hang", pod="pod-hang-0", pod_uid="hang-0", tokens=tokens,
                        extra_context={SA_KEY: "hang-sa"}), timeout=5)
    assert read_volume(target)["db"][1] == b"v1"

    # Far below the refresh's budget (100 s): the unpublish must not wait for it.
    env.node().NodeUnpublishVolume(unpublish_request(csi, target, pod_uid="hang-0"), timeout=15)
    assert mount_of(target) is None and not os.path.lexists(target)
