"""Helpers for tests of the mount path: SecretProviderClass files, kubelet-shaped
publish requests, reading a published volume back, and the mount table."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Optional

import support

TOKENS_KEY = "csi.storage.k8s.io/serviceAccount.tokens"


def write_spc(spc_dir: Path, name: str, provider: str = "fake", parameters: Optional[dict] = None,
              namespace: str = "default", file_name: Optional[str] = None) -> Path:
    """One SecretProviderClass as a YAML file; values are JSON-quoted strings (valid YAML)."""
    lines = [
        "apiVersion: secrets-store.csi.x-k8s.io/v1",
        "kind: SecretProviderClass",
        "metadata:",
        f"  name: {name}",
        f"  namespace: {namespace}",
        "spec:",
        f"  provider: {provider}",
    ]
    if parameters:
        lines.append("  parameters:")
        for k, v in parameters.items():
            lines.append(f"    {json.dumps(k)}: {json.dumps(v)}")
    path = spc_dir / (file_name or f"{namespace}-{name}.yaml")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


# kubelet's layout under the driver's --kubelet-root-dir; one definition, in support.
target_path = support.target_path


def publish_request(csi, target: str, *, spc: str = "my-spc", namespace: str = "default",
                    pod: str = "app-0", pod_uid: str = "uid-0", tokens: Optional[dict] = None,
                    secrets: Optional[dict] = None, extra_context: Optional[dict] = None):
    pb = csi.pb2
    ctx = {
        "secretProviderClass": spc,
        "csi.storage.k8s.io/pod.name": pod,
        "csi.storage.k8s.io/pod.namespace": namespace,
        "csi.storage.k8s.io/pod.uid": pod_uid,
        "csi.storage.k8s.io/serviceAccount.name": "default",
        "csi.storage.k8s.io/ephemeral": "true",
    }
    if tokens is not None:
        ctx[TOKENS_KEY] = json.dumps(tokens)
    ctx.update(extra_context or {})
    cap = pb.VolumeCapability(
        mount=pb.VolumeCapability.MountVolume(),
        access_mode=pb.VolumeCapability.AccessMode(mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER))
    return pb.NodePublishVolumeRequest(
        volume_id="csi-" + pod_uid.encode().hex()[:64].ljust(64, "0"), target_path=target,
        volume_capability=cap, readonly=True, volume_context=ctx, secrets=secrets or {})


def unpublish_request(csi, target: str, pod_uid: str = "uid-0"):
    return csi.pb2.NodeUnpublishVolumeRequest(
        volume_id="csi-" + pod_uid.encode().hex()[:64].ljust(64, "0"), target_path=target)


def mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, options) from /proc/self/mountinfo, octal escapes decoded."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields = left.split()
            point = fields[4].encode().decode("unicode_escape")
            fstype = right.split()[0]
            opts = fields[5] + "," + right.split()[2]
            out.append((point, fstype, opts))
    return out


def mount_of(path: str) -> Optional[tuple[str, str]]:
    """(fstype, options) of the topmost mount exactly at `path`, or None."""
    found = None
    for point, fstype, opts in mounts():
        if point == path:
            found = (fstype, opts)
    return found


def unmount_everything_under(root: Path) -> None:
    """Test teardown: nothing a test mounted may outlive it."""
    prefix = str(root) + "/"
    for point, _, _ in sorted(mounts(), key=lambda m: -len(m[0])):
        if point.startswith(prefix):
            subprocess.run(["umount", "-l", point], check=False)


def read_volume(target: str) -> dict[str, tuple[int, bytes]]:
    """Every file visible through the volume's top-level names: path -> (mode, bytes).
    Names beginning with `..` (the writer's own) are skipped, as a pod would see them."""
    out: dict[str, tuple[int, bytes]] = {}
    base = Path(target)

    def walk(p: Path, rel: str) -> None:
        st = os.stat(p)
        if stat.S_ISDIR(st.st_mode):
            for child in sorted(os.listdir(p)):
                walk(p / child, f"{rel}/{child}" if rel else child)
        else:
            out[rel] = (stat.S_IMODE(st.st_mode), p.read_bytes())

    for name in sorted(os.listdir(base)):
        if not name.startswith(".."):
            walk(base / name, name)
    return out


def residue(target: str) -> list[str]:
    """What a failed first mount left behind: a mount or the directory itself."""
    left = []
    if mount_of(target) is not None:
        left.append(f"a mount at {target}")
    if os.path.lexists(target):
        left.append(f"{target} exists ({os.listdir(target) if os.path.isdir(target) else 'not a dir'})")
    return left
