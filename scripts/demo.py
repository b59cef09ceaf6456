#!/usr/bin/env python3
"""Demo: one pod volume, end to end, without a Kubernetes cluster.

Starts the reference provider and the driver (standalone mode: classes from a
directory) on temporary unix sockets, then plays kubelet: registers the plugin,
publishes a secrets volume, shows the mounted files, changes a secret in the
"store", republishes (as kubelet does every minute or so) and shows the new
content, unpublishes, and stops everything.

    python scripts/demo.py --driver .build/debug/secrets-store-csi-driver \
                           --provider .build/debug/csi-reference-provider

Needs root (tmpfs mounts) and grpcio + grpcio-tools (make deps puts them in .venv).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POD_UID = "7d3c2b1a-0000-4000-8000-000000000001"


def say(msg: str = "") -> None:
    print(msg, flush=True)


def step(title: str) -> None:
    say(f"\n== {title}")


def load_csi(protos: Path, out: Path):
    """Compile csi.proto into `out` and import the generated modules."""
    from grpc_tools import protoc

    args = ["protoc", f"-I{protos}", f"--python_out={out}", f"--grpc_python_out={out}", str(protos / "csi.proto")]
    if protoc.main(args) != 0:
        sys.exit(f"demo: protoc failed on {protos / 'csi.proto'}")
    sys.path.insert(0, str(out))
    return importlib.import_module("csi_pb2"), importlib.import_module("csi_pb2_grpc")


def is_socket(p: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(p).st_mode)
    except FileNotFoundError:
        return False


def wait_for(pred, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc.poll() is not None:
            say(log.read_text(errors="replace"))
            sys.exit(f"demo: {what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            sys.exit(f"demo: {what}: not ready after {timeout}s")
        time.sleep(0.05)


def mount_line(target: str) -> str:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields = left.split()
            if fields[4] == target:
                return f"{right.split()[0]} on {target} ({fields[5]},{right.split()[2]})"
    return "(not mounted)"


def show_volume(target: str) -> None:
    say(f"mount:  {mount_line(target)}")
    for name in sorted(os.listdir(target)):
        p = os.path.join(target, name)
        kind = f"-> {os.readlink(p)}" if os.path.islink(p) else ""
        say(f"  {name:<40} {kind}")
    for root, _dirs, files in os.walk(os.path.join(target, "..data")):
        for f in sorted(files):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, os.path.join(target, "..data"))
            mode = stat.S_IMODE(os.stat(p).st_mode)
            say(f"  {rel:<20} mode {mode:04o}  {Path(p).read_text()!r}   (demo values, not real secrets)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", default=str(REPO / ".build/debug/secrets-store-csi-driver"))
    ap.add_argument("--provider", default=str(REPO / ".build/debug/csi-reference-provider"))
    ap.add_argument("--protos", default=str(REPO / "Protos"))
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for startup and shutdown")
    opts = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("demo: run as root: the driver mounts tmpfs volumes")
    driver, provider = Path(opts.driver).resolve(), Path(opts.provider).resolve()
    for b in (driver, provider):
        if not os.access(b, os.X_OK):
            sys.exit(f"demo: no binary at {b} (run make build)")

    import grpc

    tmp = Path(tempfile.mkdtemp(prefix="csi-demo-", dir="/tmp"))
    procs: list[subprocess.Popen] = []
    channel = None
    target = str(tmp / "kubelet/pods" / POD_UID / "volumes/kubernetes.io~csi/app-secrets/mount")
    try:
        pb, pb_grpc = load_csi(Path(opts.protos).resolve(), tmp)
        providers, data, spcs = tmp / "providers", tmp / "store", tmp / "classes"
        for d in (providers, data, spcs):
            d.mkdir()

        step("A secret store (files the reference provider serves) and a SecretProviderClass")
        (data / "db-password").write_text("correct-horse-battery-staple")
        (data / "api-key").write_text("ak_live_0001")
        objects = [
            {"objectName": "db-password", "path": "db/password", "mode": "0400"},
            {"objectName": "api-key"},
            {"objectName": "app-config", "path": "config.json", "value": '{"debug": false}'},
        ]
        spc = (
            "apiVersion: secrets-store.csi.x-k8s.io/v1\n"
            "kind: SecretProviderClass\n"
            "metadata:\n  name: app-secrets\n  namespace: shop\n"
            "spec:\n  provider: reference\n  parameters:\n"
            f"    objects: {json.dumps(json.dumps(objects))}\n"
        )
        (spcs / "app-secrets.yaml").write_text(spc)
        say(spc.rstrip())

        step("Starting the reference provider and the driver")
        plog, dlog = tmp / "provider.log", tmp / "driver.log"
        psock, dsock = providers / "reference.sock", tmp / "csi.sock"
        pcmd = [str(provider), "--endpoint", f"unix://{psock}", "--data-dir", str(data)]
        dcmd = [str(driver), "--endpoint", f"unix://{dsock}", "--nodeid", "demo-node",
                "--provider-volume", str(providers), "--additional-provider-volume-paths", "",
                "--spc-dir", str(spcs), "--enable-secret-rotation", "--rotation-poll-interval", "2s",
                "--state-dir", str(tmp / "state"),
                "--kubelet-root-dir", str(tmp / "kubelet")]
        for cmd, log in ((pcmd, plog), (dcmd, dlog)):
            say("$ " + " ".join(cmd))
            with open(log, "wb") as f:
                procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f))
        wait_for(lambda: is_socket(psock), opts.timeout, "reference provider", procs[0], plog)
        channel = grpc.insecure_channel(f"unix:{dsock}", options=[("grpc.enable_http_proxy", 0)])
        identity, node = pb_grpc.IdentityStub(channel), pb_grpc.NodeStub(channel)

        def probe_ok() -> bool:
            if not is_socket(dsock):
                return False
            try:
                identity.Probe(pb.ProbeRequest(), timeout=1)
                return True
            except grpc.RpcError:
                return False

        wait_for(probe_ok, opts.timeout, "driver", procs[1], dlog)

        step("kubelet registers the plugin")
        info = identity.GetPluginInfo(pb.GetPluginInfoRequest(), timeout=10)
        say(f"GetPluginInfo: {info.name} {info.vendor_version}")
        say(f"NodeGetInfo:   node_id={node.NodeGetInfo(pb.NodeGetInfoRequest(), timeout=10).node_id}")

        step("kubelet publishes the pod's volume (NodePublishVolume)")
        Path(target).parent.mkdir(parents=True)  # kubelet creates the parent; the driver the target
        tokens = {"demo-audience": {"token": "demo-service-account-token", "expirationTimestamp": "2030-01-01T00:00:00Z"}}
        req = pb.NodePublishVolumeRequest(
            volume_id="csi-" + "d" * 64, target_path=target, readonly=True,
            volume_capability=pb.VolumeCapability(
                mount=pb.VolumeCapability.MountVolume(),
                access_mode=pb.VolumeCapability.AccessMode(mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER)),
            volume_context={
                "secretProviderClass": "app-secrets",
                "csi.storage.k8s.io/pod.name": "shop-api-0",
                "csi.storage.k8s.io/pod.namespace": "shop",
                "csi.storage.k8s.io/pod.uid": POD_UID,
                "csi.storage.k8s.io/serviceAccount.name": "shop-api",
                "csi.storage.k8s.io/ephemeral": "true",
                "csi.storage.k8s.io/serviceAccount.tokens": json.dumps(tokens),
            })
        t0 = time.monotonic()
        node.NodePublishVolume(req, timeout=120)
        say(f"published in {(time.monotonic() - t0) * 1000:.1f} ms")
        show_volume(target)

        step("The secret changes in the store; kubelet republishes after the rotation interval")
        (data / "db-password").write_text("rotated-password-2")
        say("waiting 2.1 s (--rotation-poll-interval 2s) ...")
        time.sleep(2.1)
        node.NodePublishVolume(req, timeout=120)
        show_volume(target)

        step("The pod goes away (NodeUnpublishVolume)")
        node.NodeUnpublishVolume(pb.NodeUnpublishVolumeRequest(volume_id=req.volume_id, target_path=target), timeout=60)
        say(f"mount:  {mount_line(target)}")
        say(f"target: {'still there' if os.path.lexists(target) else 'removed'}")

        channel.close()
        channel = None
        step("Stopping the driver and the provider with SIGTERM")
        codes = []
        for p, name in ((procs[1], "driver"), (procs[0], "provider")):
            p.send_signal(signal.SIGTERM)
            rc = p.wait(timeout=opts.timeout)
            codes.append(rc)
            say(f"{name} exit code: {rc}")

        step("Driver log")
        say(dlog.read_text(errors="replace").rstrip() or "(empty)")

        ok = all(c == 0 for c in codes) and not os.path.lexists(target)
        say("\n" + ("Demo finished cleanly." if ok else "Demo did NOT finish cleanly."))
        return 0 if ok else 1
    finally:
        if channel is not None:
            channel.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        if mount_line(target) != "(not mounted)":
            subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
