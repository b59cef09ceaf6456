"""A deliberately broken CSI driver (Identity + Node, Python grpcio) for testing
that csi-load fails a driver whose answers look fine but whose work is not.

    broken_driver.py --mode MODE --endpoint unix:///path [the driver's other flags, ignored but --spc-dir]

csi-load starts it as if it were the driver (`--driver-bin` pointing at a
wrapper script), so it accepts the real driver's flags. Modes:

  empty     NodePublishVolume mounts a tmpfs on the target and answers OK, writing nothing
  wrong     the full `..data` layout with every object, but wrong bytes in each
  partial   the full layout with the right bytes, but the last object missing
  disk      the full layout with the right bytes, in a plain directory: no tmpfs, secrets on disk
  leftover  a correct volume, but NodeUnpublishVolume leaves the (unmounted) target directory
  errors    NodePublishVolume fails at once with UNAVAILABLE, every other call with INTERNAL

The object names come from the SecretProviderClass files in `--spc-dir` (the
`objects` parameter); the right bytes from the reference provider's data
directory, which csi-load's fixture keeps next to the provider directory
(`<--provider-volume>/../store`). NodeUnpublishVolume unmounts and removes the
target in every mode but `errors`, so the harness's teardown leaves nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import cleanup_compiled, compile_proto  # noqa: E402

MODES = ("empty", "wrong", "partial", "disk", "leftover", "errors")


def object_names(spc_dir: Path) -> list[str]:
    names: list[str] = []
    for f in sorted(spc_dir.glob("*.yaml")):
        spc = yaml.safe_load(f.read_text())
        objects = json.loads(spc["spec"]["parameters"]["objects"])
        names += [o["objectName"] for o in objects]
    return names


def write_atomic_layout(target: Path, files: dict[str, bytes]) -> None:
    """kubelet's atomic-writer layout: ..data -> ..<ts>/, name -> ..data/name."""
    ts = target / "..2000_01_01_00_00_00.000000000"
    ts.mkdir()
    for name, data in files.items():
        (ts / name).write_bytes(data)
    os.symlink(ts.name, target / "..data")
    for name in files:
        os.symlink(f"..data/{name}", target / name)


class BrokenNode:
    def __init__(self, csi, mode: str, names: list[str], store: Path):
        self.pb = csi.pb2
        self.mode = mode
        self.names = names
        self.store = store
        self.lock = threading.Lock()

    # Identity
    def GetPluginInfo(self, request, context):
        return self.pb.GetPluginInfoResponse(name="secrets-store.csi.k8s.io", vendor_version="broken")

    def GetPluginCapabilities(self, request, context):
        return self.pb.GetPluginCapabilitiesResponse()

    def Probe(self, request, context):
        return self.pb.ProbeResponse()

    # Node
    def NodeGetInfo(self, request, context):
        return self.pb.NodeGetInfoResponse(node_id="broken-node")

    def NodeGetCapabilities(self, request, context):
        return self.pb.NodeGetCapabilitiesResponse()

    def NodePublishVolume(self, request, context):
        if self.mode == "errors":
            context.abort(grpc.StatusCode.UNAVAILABLE, "broken driver: unavailable")
        target = Path(request.target_path)
        with self.lock:
            target.mkdir(exist_ok=True)
            if self.mode != "disk" and not os.path.ismount(target):
                subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
            if self.mode != "empty" and not (target / "..data").exists():
                if self.mode == "wrong":
                    files = {n: b"not the secret" for n in self.names}
                elif self.mode == "partial":
                    files = {n: (self.store / n).read_bytes() for n in self.names[:-1]}
                else:
                    files = {n: (self.store / n).read_bytes() for n in self.names}
                write_atomic_layout(target, files)
        return self.pb.NodePublishVolumeResponse()

    def NodeUnpublishVolume(self, request, context):
        if self.mode == "errors":
            context.abort(grpc.StatusCode.INTERNAL, "broken driver: internal")
        target = Path(request.target_path)
        with self.lock:
            if os.path.ismount(target):
                subprocess.run(["umount", str(target)], check=True)
            if self.mode == "disk":
                subprocess.run(["rm", "-rf", "--one-file-system", str(target)], check=True)
            elif target.is_dir() and self.mode != "leftover":
                target.rmdir()
        return self.pb.NodeUnpublishVolumeResponse()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=MODES, required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--spc-dir", required=True)
    ap.add_argument("--provider-volume", required=True)
    opts, _ = ap.parse_known_args()
    csi = compile_proto("csi")
    # The generated base classes answer UNIMPLEMENTED for what BrokenNode leaves out.
    servicer = type("Servicer", (BrokenNode, csi.grpc.IdentityServicer, csi.grpc.NodeServicer), {})
    node = servicer(csi, opts.mode, object_names(Path(opts.spc_dir)), Path(opts.provider_volume).parent / "store")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    csi.grpc.add_IdentityServicer_to_server(node, server)
    csi.grpc.add_NodeServicer_to_server(node, server)
    server.add_insecure_port("unix:" + opts.endpoint.removeprefix("unix://"))
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()
    cleanup_compiled()
    return 0


if __name__ == "__main__":
    sys.exit(main())
