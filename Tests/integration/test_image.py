"""The runtime image is complete: scripts/image-rootfs.sh assembles the image's file tree
from a driver binary (no container engine needed), and the driver runs inside it with
chroot, as a container runtime would run it: --version, then a real publish and unpublish
with a provider whose socket is inside the tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from fake_provider import FakeProvider
from mounting import publish_request, read_volume, unmount_everything_under, unpublish_request, write_spc
from support import DriverProcess, run_cmd, short_tmpdir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image(driver_path):
    if os.geteuid() != 0:
        pytest.skip("chroot and mounts need root: run the tests as root")
    out = short_tmpdir()
    r = run_cmd([str(REPO / "scripts" / "image-rootfs.sh"), str(driver_path), str(out)], timeout=300)
    assert r.returncode == 0, r.stderr
    root = out / "rootfs"
    # What a container runtime provides: /proc and /dev.
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    subprocess.run(["mount", "--rbind", "/dev", str(root / "dev")], check=True)
    try:
        yield out
    finally:
        unmount_everything_under(root)
        shutil.rmtree(out, ignore_errors=True)


def test_tree_holds_only_the_driver_its_libraries_and_certificates(image):
    with tarfile.open(image / "rootfs.tar") as t:
        members = [m for m in t.getmembers() if m.isfile()]
    files = sorted(m.name.removeprefix("./") for m in members)
    executables = [m.name.removeprefix("./") for m in members if m.mode & 0o111 and ".so" not in m.name]
    assert executables == ["usr/local/bin/secrets-store-csi-driver"], executables
    assert "etc/ssl/certs/ca-certificates.crt" in files
    assert not [f for f in files if f.startswith(("usr/bin/", "bin/", "sbin/", "usr/sbin/"))], "no shell or tools in the image"
    assert all(m.uid == 0 and m.gid == 0 for m in members)


def test_oci_layout_has_the_entrypoint(image):
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed (make deps installs it): only the plain rootfs tarball was made")
    with tarfile.open(image / "oci-image.tar") as t:
        names = t.getnames()
        assert "./oci-layout" in names and "./index.json" in names
        index = json.load(t.extractfile("./index.json"))
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(t.extractfile(f"./blobs/sha256/{manifest_digest}"))
        config = json.load(t.extractfile(f"./blobs/sha256/{manifest['config']['digest'].split(':')[1]}"))
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/secrets-store-csi-driver"]
    assert config["os"] == "linux" and config["architecture"] == "amd64"


def test_version_runs_in_the_image(image, driver_path):
    inside = run_cmd(["chroot", str(image / "rootfs"), "/usr/local/bin/secrets-store-csi-driver", "--version"])
    outside = run_cmd([str(driver_path), "--version"])
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout == outside.stdout


def test_libcurl_and_its_libraries_resolve_in_the_image(image):
    """The driver loads libcurl on its first HTTP request (cluster mode) rather than linking
    it, so ldd of the binary no longer names it: the image must hold it all the same."""
    root = image / "rootfs"
    curl = [p for p in ("lib/x86_64-linux-gnu/libcurl.so.4", "usr/lib/x86_64-linux-gnu/libcurl.so.4") if (root / p).exists()]
    assert curl, "libcurl.so.4 is not in the image"
    # The image's own loader resolves every library libcurl needs inside the image.
    r = run_cmd(["chroot", str(root), "/lib64/ld-linux-x86-64.so.2", "--list", "/" + curl[0]])
    assert r.returncode == 0 and "not found" not in r.stdout, r.stdout + r.stderr
    assert "libssl.so.3" in r.stdout, r.stdout


def test_publish_and_unpublish_from_the_image(image, csi):
    root = image / "rootfs"
    providers = root / "var/run/secrets-store-csi-providers"
    spcs = root / "etc/spc"
    kubelet = root / "var/lib/kubelet"
    for d in (providers, spcs, kubelet):
        d.mkdir(parents=True, exist_ok=True)
    write_spc(spcs, "my-spc", parameters={"objects": "secret.txt"})
    provider = FakeProvider(providers / "fake.sock").start()
    provider.files = [("db/password", 0o440, b"from-the-image")]
    provider.object_versions = [("db/password", "v7")]
    # The driver runs with the image's root: every path it is given is inside the tree.
    driver = DriverProcess(
        Path("/usr/local/bin/secrets-store-csi-driver"), image, "unix:///csi/csi.sock",
        ["--nodeid", "image-node", "--spc-dir", "/etc/spc", "--provider-volume", "/var/run/secrets-store-csi-providers",
         "--additional-provider-volume-paths", "/var/run/secrets-store-csi-providers"],
        prefix=["chroot", str(root)], connect_endpoint=f"unix://{root}/csi/csi.sock")
    try:
        driver.wait_ready(csi)
        node = csi.grpc.NodeStub(driver.channel())
        parent = kubelet / "pods/uid-img/volumes/kubernetes.io~csi/secrets"
        parent.mkdir(parents=True)
        inside_target = "/var/lib/kubelet/pods/uid-img/volumes/kubernetes.io~csi/secrets/mount"
        node.NodePublishVolume(publish_request(csi, inside_target, pod_uid="uid-img"), timeout=20)
        content = read_volume(str(root) + inside_target)
        assert content == {"db/password": (0o440, b"from-the-image")}
        node.NodeUnpublishVolume(unpublish_request(csi, inside_target, pod_uid="uid-img"), timeout=20)
        assert not os.path.lexists(str(root) + inside_target)
        assert driver.stop() == 0, driver.describe()
    finally:
        driver.kill()
        provider.stop()
