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


def test_a_nul_byte_in_a_provider_path_fails_the_publish(mount_env, csi, outside):
    """Strings reach the driver with their length (never read up to a NUL), so a name
    "ok\\0/../../../outside/escape" is refused whole, not written as "ok"."""
    env = mount_env
    env.provider.files = [("good.txt", 0, b"fine"), ("ok\x00/../../../outside/escape", 0, b"v")]
    env.start()
    target = target_path(env.root, "uid-nul")
    e = rpc_error(env.node().NodePublishVolume, publish_request(csi, target, pod_uid="uid-nul"), timeout=T)
    assert e.code() == grpc.StatusCode.INTERNAL, e
    assert e.details() == ('provider "fake" sent a response the driver refuses: invalid v1alpha1.MountResponse: '
                           'field files[1].path contains a NUL byte'), e.details()
    assert len(env.provider.calls("Mount")) == 1
    assert residue(target) == []
    assert everything_under(outside) == []


def test_a_nul_byte_from_the_reference_provider_fails_the_publish(mount_env, csi, provider_proto, outside):
    """The reference provider's hostile mode nul sends "evil\\0/../../escape" on the wire:
    the publish fails and leaves nothing; the same provider's normal answer still mounts."""
    from mounting import write_spc
    from support import require_executable
    from test_reference_provider import ReferenceProvider, reference_provider_bin

    binary = require_executable(reference_provider_bin(), "csi-reference-provider", "REFERENCE_PROVIDER_BIN")
    ref = ReferenceProvider(binary, mount_env.providers, provider_proto, [], "reference").wait_ready()
    try:
        (ref.data_dir / "db").write_bytes(b"v1")
        objects = '[{"objectName": "db"}]'
        write_spc(mount_env.spcs, "nul-spc", provider="reference", parameters={"objects": objects, "fault.hostile": "nul"})
        write_spc(mount_env.spcs, "fine-spc", provider="reference", parameters={"objects": objects})
        env = mount_env
        env.start()
        node = env.node()
        target = target_path(env.root, "uid-refnul")
        e = rpc_error(node.NodePublishVolume, publish_request(csi, target, spc="nul-spc", pod_uid="uid-refnul"), timeout=T)
        assert e.code() == grpc.StatusCode.INTERNAL, e
        assert "sent a response the driver refuses" in e.details() and "path contains a NUL byte" in e.details(), e.details()
        assert residue(target) == []
        fine = target_path(env.root, "uid-reffine")
        node.NodePublishVolume(publish_request(csi, fine, spc="fine-spc", pod_uid="uid-reffine"), timeout=T)
        assert read_volume(fine) == {"db": (0o644, b"v1")}
        node.NodeUnpublishVolume(unpublish_request(csi, fine, "uid-reffine"), timeout=T)
        assert everything_under(outside) == [] and not os.path.lexists(env.root / "escape")

        def counted() -> bool:  # the stats file is written about once a second
            try:
                return ref.stats().get("hostile_responses") == {"nul": 1}
            except (FileNotFoundError, ValueError):
                return False

        wait_until(counted, 10, "the provider to count its one nul answer")
    finally:
        ref.kill()


SECRET_TOKEN = "eyJhbGciOiJSUzI1NiJ9.do-not-echo-this-token"


@pytest.mark.parametrize("case", ["target_path", "volume_id", "volume_context", "tokens", "secrets"])
def test_a_nul_byte_in_a_request_string_is_invalid_argument(mount_env, csi, outside, case):
    """kubelet's strings are refused whole when they hold a NUL byte, naming the field
    and never the value; nothing is mounted or created, the provider is never called."""
    env = mount_env
    env.start()
    node = env.node()
    target = target_path(env.root, "uid-reqnul")
    req = publish_request(csi, target, pod_uid="uid-reqnul", secrets={"password": "hunter2"},
                          tokens={"vault": {"token": SECRET_TOKEN, "expirationTimestamp": "2026-11-27T10:00:00Z"}})
    expect = {
        "target_path": "field target_path contains a NUL byte",
        "volume_id": "field volume_id contains a NUL byte",
        "volume_context": 'the value of volume_context["csi.storage.k8s.io/pod.name"] contains a NUL byte',
        "tokens": 'the value of volume_context["csi.storage.k8s.io/serviceAccount.tokens"] contains a NUL byte',
        "secrets": "a value of field secrets contains a NUL byte",
    }[case]
    if case == "target_path":
        req.target_path = target + "\x00/../../../outside/x"
    elif case == "volume_id":
        req.volume_id += "\x00x"
    elif case == "volume_context":
        req.volume_context["csi.storage.k8s.io/pod.name"] = "app-0\x00/../x"
    elif case == "tokens":
        key = "csi.storage.k8s.io/serviceAccount.tokens"
        req.volume_context[key] = req.volume_context[key].replace(SECRET_TOKEN, SECRET_TOKEN + "\x00")
    else:
        req.secrets["password"] = "hunter2\x00" + SECRET_TOKEN
    e = rpc_error(node.NodePublishVolume, req, timeout=T)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert e.details() == f"invalid csi.v1.NodePublishVolumeRequest: {expect}", e.details()
    for secret in (SECRET_TOKEN, "hunter2", "do-not-echo"):
        assert secret not in e.details()
    if case == "target_path":
        e = rpc_error(node.NodeUnpublishVolume, unpublish_request(csi, req.target_path, "uid-reqnul"), timeout=T)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        assert "field target_path contains a NUL byte" in e.details()
    assert env.provider.calls("Mount") == []
    assert residue(target) == [] and everything_under(outside) == []
    # The driver carries on: the same request without the NUL byte mounts.
    node.NodePublishVolume(publish_request(csi, target, pod_uid="uid-reqnul"), timeout=T)
    assert read_volume(target) != {}
    node.NodeUnpublishVolume(unpublish_request(csi, target, "uid-reqnul"), timeout=T)


# Same length as each replacement, so no length prefix changes when patched in raw bytes.
PLACEHOLDER = "PLACEHOLDER-UTF8"
INVALID_UTF8 = b"\xc0\x80" + b"x" * (len(PLACEHOLDER) - 4) + b"\xed\xa0"  # an overlong NUL, a cut surrogate


@pytest.mark.parametrize("case", ["target_path", "secrets"])
def test_invalid_utf8_in_a_request_string_is_invalid_argument(mount_env, csi, case):
    """Raw bytes on the wire (grpcio's message classes cannot hold invalid UTF-8 in a
    string): proto3 strings must be UTF-8, and the driver refuses the request naming
    the field, without the secret around it."""
    env = mount_env
    env.start()
    target = target_path(env.root, "uid-utf8")
    if case == "target_path":
        req = publish_request(csi, target + PLACEHOLDER, pod_uid="uid-utf8")
        expect = "field target_path is not valid UTF-8"
    else:
        req = publish_request(csi, target, pod_uid="uid-utf8", secrets={"password": SECRET_TOKEN + PLACEHOLDER})
        expect = "a value of field secrets is not valid UTF-8"
    raw = req.SerializeToString()
    assert raw.count(PLACEHOLDER.encode()) == 1 and len(INVALID_UTF8) == len(PLACEHOLDER)
    raw = raw.replace(PLACEHOLDER.encode(), INVALID_UTF8)
    call = env.driver.channel().unary_unary("/csi.v1.Node/NodePublishVolume")  # identity (de)serializers
    e = rpc_error(call, raw, timeout=T)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert e.details() == f"invalid csi.v1.NodePublishVolumeRequest: {expect}", e.details()
    assert SECRET_TOKEN not in e.details()
    assert env.provider.calls("Mount") == [] and residue(target) == []


def test_a_failed_refresh_keeps_the_old_content_whole(mount_env, csi, outside):
    env = mount_env
    env.start("--enable-secret-rotation=true", "--rotation-poll-interval", "10ms")
    node = env.node()
    target = target_path(env.root, "uid-keep")
    req = publish_request(csi, target, pod_uid="uid-keep")
    node.NodePublishVolume(req, timeout=T)
    before = read_volume(target)
    for bad in ["../x", "/etc/x", "x" * 256, "a/../../b", "ok\x00/../../x"]:
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
