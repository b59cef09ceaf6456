"""Restart with live mounts: a driver killed with SIGKILL and started again keeps serving
every volume the killed one had mounted (found through its records in --state-dir and the
mount table), with no remount, rotation resumed, republish and unpublish working; and it
removes what a first mount killed half-way left (a tmpfs without content).

RESTART_VOLUMES sets how many volumes the main test publishes (default 200, quick enough
for CI; 1000 for the numbers in docs/restart.md)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mounting import mount_of, mounts, publish_request, read_volume, target_path, unpublish_request, write_spc
from support import mounting_env, wait_until
from test_reference_provider import ReferenceProvider, reference_provider_bin

VOLUMES = int(os.environ.get("RESTART_VOLUMES", "200"))
SOURCE = "secrets-store.csi.k8s.io"  # the driver's name: the source of its tmpfs mounts


def mount_ids(prefix: str) -> dict[str, tuple[int, str]]:
    """mount point -> (mount id, source) of the topmost mount, for mounts under prefix."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields = left.split()
            point = fields[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                out[point] = (int(fields[0]), right.split()[1])
    return out


class Node:
    """A kubelet root, a reference provider, a class, a state directory: what survives
    the driver's restarts."""

    def __init__(self, workdir: Path, start_driver, csi, provider_proto):
        self.root = workdir
        self.csi = csi
        self.providers = workdir / "providers"
        self.spcs = workdir / "spcs"
        self.state = workdir / "state"
        self.providers.mkdir()
        self.spcs.mkdir()
        binary = reference_provider_bin()
        if not binary.exists():
            pytest.fail(f"csi-reference-provider not built: {binary}", pytrace=False)
        self.provider = ReferenceProvider(binary, self.providers, provider_proto, [], "reference").wait_ready()
        (self.provider.data_dir / "db-password").write_bytes(b"first")
        objects = [{"objectName": "db-password"}, {"objectName": "api-key", "value": "k-1", "path": "conf/api-key", "mode": "0400"}]
        write_spc(self.spcs, "ref-spc", provider="reference", parameters={"objects": json.dumps(objects)})
        self._start_driver = start_driver
        self.driver = None

    def start(self, *args: str):
        self.driver = self._start_driver(
            "--provider-volume", str(self.providers), "--additional-provider-volume-paths", "",
            "--spc-dir", str(self.spcs), "--state-dir", str(self.state), *args)
        return self.driver

    def node(self):
        return self.csi.grpc.NodeStub(self.driver.channel())

    def publish(self, uid: str):
        target = target_path(self.root, uid)
        self.node().NodePublishVolume(publish_request(self.csi, target, spc="ref-spc", pod_uid=uid), timeout=60)
        return target

    def records(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.state.glob("*.json"))]

    def close(self):
        from mounting import unmount_everything_under

        self.provider.kill()
        unmount_everything_under(self.root)


@pytest.fixture
def node_env(start_driver, workdir, csi, provider_proto):
    yield from mounting_env(lambda: Node(workdir, start_driver, csi, provider_proto), Node.close)


def expected(password: bytes) -> dict:
    return {"db-password": (0o644, password), "conf/api-key": (0o400, b"k-1")}


def recovered_line(driver) -> dict:
    for line in driver.stderr().splitlines():
        if "volumes of earlier runs recovered" in line:
            return dict(re.findall(r'(\w+)="?([^" ]*)"?', line))
    raise AssertionError(f"no recovery line\n{driver.describe()}")


def test_a_killed_driver_restarts_serving_every_volume_without_a_remount(node_env, csi):
    env = node_env
    interval = max(3, VOLUMES // 100)
    env.start("--enable-secret-rotation", "--rotation-poll-interval", f"{interval}s")
    uids = [f"live-{i}" for i in range(VOLUMES)]
    with ThreadPoolExecutor(8) as pool:
        targets = list(pool.map(env.publish, uids))
    before = mount_ids(str(env.root) + "/pods/")
    assert set(before) == set(targets) and all(src == SOURCE for _, src in before.values())
    assert len(env.records()) == VOLUMES
    record = env.records()[0]
    assert record["provider"] == "reference" and record["secretProviderClass"] == "ref-spc" and record["timerRefresh"]
    assert {f["path"] for f in record["files"]} == {"db-password", "conf/api-key"}

    env.driver.kill()  # SIGKILL: no graceful anything
    started = time.monotonic()
    env.start("--enable-secret-rotation", "--rotation-poll-interval", f"{interval}s")
    ready = time.monotonic() - started
    line = recovered_line(env.driver)
    print(f"\nrestart with {VOLUMES} live volumes: Probe ready {ready * 1000:.0f} ms after exec "
          f"(recovery itself {line['ms']} ms)")
    assert line["adopted"] == str(VOLUMES) and line["failures"] == "0"

    after = mount_ids(str(env.root) + "/pods/")
    assert after == before, "a volume was remounted (its mount id changed) or lost"
    for target in targets:
        assert read_volume(target) == expected(b"first")

    # Rotation resumed on the adopted volumes: a changed secret reaches all of them
    # without a republish.
    (env.provider.data_dir / "db-password").write_bytes(b"second")
    wait_until(lambda: all(read_volume(t)["db-password"][1] == b"second" for t in targets),
               timeout=30 + 3 * interval, what="the timer refresh of every adopted volume", interval=0.5)

    # Republish answers OK and keeps the content; unpublish removes mount and target.
    node = env.node()
    for uid, target in zip(uids, targets):
        node.NodePublishVolume(publish_request(csi, target, spc="ref-spc", pod_uid=uid), timeout=60)
        assert read_volume(target) == expected(b"second")
    assert mount_ids(str(env.root) + "/pods/") == before
    for uid, target in zip(uids, targets):
        node.NodeUnpublishVolume(unpublish_request(csi, target, pod_uid=uid), timeout=60)
        assert mount_of(target) is None and not os.path.lexists(target)
    assert env.records() == []


def test_records_hold_no_token_secret_or_attribute_value(node_env, csi):
    env = node_env
    env.start()
    target = target_path(env.root, "tok-0")
    tokens = {"vault": {"token": "tok-VALUE-1f2e3d", "expirationTimestamp": "2099-01-01T00:00:00Z"}}
    request = publish_request(csi, target, spc="ref-spc", pod_uid="tok-0", tokens=tokens,
                              secrets={"password": "ref-SECRET-9a8b7c"}, extra_context={"custom": "attr-VALUE-5e6f"})
    env.node().NodePublishVolume(request, timeout=20)
    text = "".join(p.read_text() for p in env.state.iterdir() if p.is_file())
    for value in ("tok-VALUE-1f2e3d", "ref-SECRET-9a8b7c", "attr-VALUE-5e6f", "first", "k-1"):
        assert value not in text, f"{value!r} is in the state directory"
    [record] = env.records()
    assert record["timerRefresh"] is False, "a request with tokens must wait for kubelet's republish"
    env.node().NodeUnpublishVolume(unpublish_request(csi, target, pod_uid="tok-0"), timeout=20)
    assert env.records() == []


def test_restart_removes_half_built_volumes_and_finishes_interrupted_writes(node_env, csi):
    env = node_env
    env.start()
    kept = env.publish("kept-0")
    kept_id = mount_ids(kept)[kept][0]
    env.driver.kill()

    # A first mount killed after mounting, before any content: no ..data, no record.
    half = target_path(env.root, "half-0")
    os.mkdir(half)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", SOURCE, half], check=True)
    # Another driver's first mount in progress, under another kubelet root (as tests and
    # benchmarks run several drivers on one machine): not this driver's to remove.
    foreign = target_path(env.root / "other-kubelet", "foreign-0")
    os.mkdir(foreign)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", SOURCE, foreign], check=True)
    # A write killed half-way in the kept volume: a partial version and a temporary link.
    partial = Path(kept) / "..2020_01_01_00_00_00.000000001_deadbeef"
    partial.mkdir()
    (partial / "db-password").write_bytes(b"half-writ")
    os.symlink(partial.name, Path(kept) / "..data_tmp")
    os.unlink(Path(kept) / "conf")  # and a top-level link the swap had not made yet
    # A record whose volume is gone (unpublished while no driver ran).
    gone = target_path(env.root, "gone-0")
    rec = dict(env.records()[0], targetPath=gone)
    (env.state / (hashlib.sha256(gone.encode()).hexdigest()[:32] + ".json")).write_text(json.dumps(rec))
    assert len(env.records()) == 2

    env.start()
    line = recovered_line(env.driver)
    assert (line["adopted"], line["half_built_removed"], line["records_removed"], line["repaired"]) == ("1", "1", "1", "1"), line
    assert mount_of(half) is None and not os.path.lexists(half), "the half-built first mount is still there"
    assert mount_of(foreign) is not None, "the driver removed a mount under another kubelet root"
    assert line["unrecorded"] == "0", line
    subprocess.run(["umount", foreign], check=True)
    assert mount_ids(kept)[kept][0] == kept_id
    assert {n for n in os.listdir(kept) if n.startswith("..")} == {"..data", os.readlink(Path(kept) / "..data")}
    assert read_volume(kept) == expected(b"first")
    assert [r["targetPath"] for r in env.records()] == [kept]
    env.node().NodeUnpublishVolume(unpublish_request(csi, kept, pod_uid="kept-0"), timeout=20)
    assert mount_of(kept) is None and env.records() == []
