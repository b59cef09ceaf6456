"""Path confinement, one test per trick: what a provider returns, what kubelet sends as
a target, and what a container plants in its volume can never make the driver read or
write outside the volume, and a volume is never left partial. Also fsGroup
(volume_mount_group) ownership and the CSI socket's mode.

Every driver here runs with --kubelet-root-dir <workdir> (the start_driver fixture), so
valid targets are target_path(env.root, uid)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import grpc
import pytest

from mounting import publish_request, read_volume, residue, target_path, unpublish_request
from support import wait_until

T = 15


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value


def everything_under(path: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        found += [os.path.join(dirpath, n) for n in dirnames + filenames]
    return sorted(found)


@pytest.fixture
def outside(workdir) -> Path:
    """A directory beside the kubelet root that nothing may ever be written to."""
    d = workdir.parent / (workdir.name + "-outside")
    d.mkdir()
    try:
        yield d
    finally:
        for p in reversed(everything_under(d)):
            os.unlink(p) if not os.path.isdir(p) or os.path.islink(p) else os.rmdir(p)
        d.rmdir()


@pytest.mark.parametrize("bad_path, why", [
    ("x" * 256, "longer than 255"),
    ("/".join(["d" * 200] * 21), "longer than 4096"),
    ("../../outside/escape", '".." element'),
    ("/tmp/escape", "absolute"),
])
def test_hostile_provider_paths_fail_whole_and_write_nothing(mount_env, csi, outside, bad_path, why):
    env = mount_env
    env.provider.files = [("good.txt", 0, b"fine"), (bad_path, 0, b"evil")]
    env.start()
    target = target_path(env.root, "uid-hostile")
    e = rpc_error(env.node().NodePublishVolume, publish_request(csi, target, pod_uid="uid-hostile"), timeout=T)
    assert e.code() == grpc.StatusCode.INTERNAL, e
    assert why in e.details()
    assert residue(target) == []
    assert everything_under(outside) == [] and not os.path.exists("/tmp/escape")


def test_a_nul_byte_in_a_provider_path_stays_inside(mount_env, csi, outside):
    """protobuf-c ends strings at the first NUL when it decodes, so the driver sees
    the path up to it ("ok"): the rest ("/../../escape") never reaches a system call."""
    env = mount_env
    env.provider.files = [("ok\x00/../../../outside/escape", 0, b"v")]
    env.start()
    target = target_path(env.root, "uid-nul")
    node = env.node()
    try:
        node.NodePublishVolume(publish_request(csi, target, pod_uid="uid-nul"), timeout=T)
        assert read_volume(target) == {"ok": (0o644, b"v")}
        node.NodeUnpublishVolume(unpublish_request(csi, target, "uid-nul"), timeout=T)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INTERNAL, e
        assert residue(target) == []
    assert everything_under(outside) == []


def test_a_failed_refresh_keeps_the_old_content_whole(mount_env, csi, outside):
    env = mount_env
    env.start("--enable-secret-rotation=true", "--rotation-poll-interval", "10ms")
    node = env.node()
    target = target_path(env.root, "uid-keep")
    req = publish_request(csi, target, pod_uid="uid-keep")
    node.NodePublishVolume(req, timeout=T)
    before = read_volume(target)
    for bad in ["../x", "/etc/x", "x" * 256, "a/../../b"]:
        env.provider.files = [("secret.txt", 0, b"new"), (bad, 0, b"evil")]
        env.provider.object_versions = [("secret.txt", "v2")]
        node.NodePublishVolume(req, timeout=T)  # the refresh fails; the republish does not
        assert read_volume(target) == before
    assert everything_under(outside) == []
    node.NodeUnpublishVolume(unpublish_request(csi, target, "uid-keep"), timeout=T)


def test_a_target_outside_the_kubelet_root_is_invalid_argument(mount_env, csi, outside):
    env = mount_env
    env.start()
    node = env.node()
    for target in [str(outside / "pods" / "u" / "mount"), str(env.root / "plugins" / "u" / "mount"),
                   str(env.root / "pods"), str(env.root / "pods" / "u" / ".." / ".." / ".." / "x"),
                   str(env.root / "pods" / ("n" * 256) / "mount"),
                   str(env.root / "pods" / "/".join(["p" * 250] * 17) / "mount")]:
        e = rpc_error(node.NodePublishVolume, publish_request(csi, target, pod_uid="uid-out"), timeout=T)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (target, e)
        assert "target_path" in e.details()
        e = rpc_error(node.NodeUnpublishVolume, unpublish_request(csi, target, "uid-out"), timeout=T)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (target, e)
    assert env.provider.calls("Mount") == []
    assert everything_under(outside) == []


def test_a_target_reaching_outside_through_a_symlinked_parent_is_invalid_argument(mount_env, csi, outside):
    env = mount_env
    env.start()
    node = env.node()
    (env.root / "pods").mkdir(exist_ok=True)
    os.symlink(outside, env.root / "pods" / "uid-link")
    target = str(env.root / "pods" / "uid-link" / "volumes" / "kubernetes.io~csi" / "v" / "mount")
    e = rpc_error(node.NodePublishVolume, publish_request(csi, target, pod_uid="uid-link"), timeout=T)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert "symbolic link" in e.details()
    e = rpc_error(node.NodeUnpublishVolume, unpublish_request(csi, target, "uid-link"), timeout=T)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert everything_under(outside) == []


def test_symlinks_swapped_into_the_volume_during_writes_never_lead_outside(mount_env, csi, outside):
    """A container keeps replacing ..data, the top-level links and directories inside
    the timestamp directories with links to `outside` while every republish rewrites
    the volume: nothing lands outside, and every call still answers."""
    env = mount_env
    env.provider.files = [("secret.txt", 0, b"v0"), ("db/password", 0, b"p0")]
    env.start("--enable-secret-rotation=true", "--rotation-poll-interval", "10ms")
    node = env.node()
    target = target_path(env.root, "uid-race")
    req = publish_request(csi, target, pod_uid="uid-race")
    node.NodePublishVolume(req, timeout=T)
    stop = threading.Event()
    swaps = [0]

    def attack() -> None:
        link = os.path.join(target, ".swap")
        while not stop.is_set():
            for name in ["..data", "..data_tmp", "db", "secret.txt"]:
                try:
                    os.symlink(outside, link)
                    os.replace(link, os.path.join(target, name))
                    swaps[0] += 1
                except OSError:
                    pass
            try:
                for entry in os.listdir(target):
                    if entry.startswith("..2"):
                        sub = os.path.join(target, entry, "db")
                        os.symlink(outside, link)
                        os.replace(link, sub) if not os.path.isdir(sub) or os.path.islink(sub) else None
            except OSError:
                pass

    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    try:
        for i in range(40):
            env.provider.files = [("secret.txt", 0, f"v{i}".encode()), ("db/password", 0, f"p{i}".encode())]
            env.provider.object_versions = [("secret.txt", f"v{i}")]
            try:
                node.NodePublishVolume(req, timeout=T)
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.INTERNAL,), e
    finally:
        stop.set()
        thread.join()
    assert swaps[0] > 0
    assert everything_under(outside) == []
    node.NodeUnpublishVolume(unpublish_request(csi, target, "uid-race"), timeout=T)
    assert residue(target) == []


def test_volume_mount_group_makes_files_the_groups_and_group_readable(mount_env, csi):
    env = mount_env
    env.provider.files = [("owner-only", 0o400, b"a"), ("db/password", 0o440, b"b"), ("plain", 0, b"c")]
    env.start()
    node = env.node()
    target = target_path(env.root, "uid-group")
    req = publish_request(csi, target, pod_uid="uid-group")
    req.volume_capability.mount.volume_mount_group = "3000"
    node.NodePublishVolume(req, timeout=T)
    assert read_volume(target) == {"owner-only": (0o440, b"a"), "db/password": (0o440, b"b"), "plain": (0o644, b"c")}
    for rel in ["owner-only", "db/password", "plain", "db", "."]:
        assert os.stat(os.path.join(target, rel)).st_gid == 3000, rel
    for rel in ["db", "."]:
        mode = stat.S_IMODE(os.stat(os.path.join(target, rel)).st_mode)
        assert mode == 0o2755, (rel, oct(mode))
    node.NodeUnpublishVolume(unpublish_request(csi, target, "uid-group"), timeout=T)
    for bad in ["abc", "-1", "4294967295", "3000 "]:
        req.volume_capability.mount.volume_mount_group = bad
        e = rpc_error(node.NodePublishVolume, req, timeout=T)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "volume_mount_group" in e.details(), bad
    assert residue(target) == []


def test_the_csi_socket_is_not_world_writable(mount_env):
    env = mount_env
    old = os.umask(0)  # the driver inherits it: the mode must not depend on it
    try:
        d = env.start()
    finally:
        os.umask(old)
    path = d.endpoint[len("unix://"):]
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & 0o007 == 0 and mode == 0o660, oct(mode)
