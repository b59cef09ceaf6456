#!/usr/bin/env python3
"""Demo: start the driver on a temporary unix socket and talk to it the way
kubelet, node-driver-registrar and the liveness probe do.

    python scripts/demo.py --driver .build/debug/secrets-store-csi-driver

Needs grpcio and grpcio-tools (make deps puts them in .venv).
"""

from __future__ import annotations

import argparse
import importlib
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


def say(msg: str = "") -> None:
    print(msg, flush=True)


def step(title: str) -> None:
    say(f"\n== {title}")


def load_csi(protos: Path, out: Path):
    """Compile csi.proto into `out` and import the generated modules."""
    from grpc_tools import protoc

    args = ["protoc", f"-I{protos}", f"--python_out={out}", f"--grpc_python_out={out}",
            str(protos / "csi.proto")]
    if protoc.main(args) != 0:
        sys.exit(f"demo: protoc failed on {protos / 'csi.proto'}")
    sys.path.insert(0, str(out))
    return importlib.import_module("csi_pb2"), importlib.import_module("csi_pb2_grpc")


def is_socket(p: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(p).st_mode)
    except FileNotFoundError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", default=str(REPO / ".build/debug/secrets-store-csi-driver"),
                    help="path to the driver binary")
    ap.add_argument("--protos", default=str(REPO / "Protos"), help="directory with csi.proto")
    ap.add_argument("--nodeid", default="demo-node")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="seconds to wait for startup and for shutdown")
    opts = ap.parse_args()

    driver = Path(opts.driver).resolve()
    if not os.access(driver, os.X_OK):
        sys.exit(f"demo: no driver binary at {driver} (run make build)")

    import grpc

    tmp = Path(tempfile.mkdtemp(prefix="csi-demo-", dir="/tmp"))
    proc = None
    channel = None
    try:
        pb, pb_grpc = load_csi(Path(opts.protos).resolve(), tmp)
        sock = tmp / "csi.sock"
        endpoint = f"unix://{sock}"
        log_path = tmp / "driver.log"
        cmd = [str(driver), "--endpoint", endpoint, "--nodeid", opts.nodeid]

        step("Starting the driver")
        say("$ " + " ".join(cmd))
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

        channel = grpc.insecure_channel(f"unix:{sock}", options=[("grpc.enable_http_proxy", 0)])
        identity = pb_grpc.IdentityStub(channel)
        node = pb_grpc.NodeStub(channel)

        deadline = time.monotonic() + opts.timeout
        while True:
            if proc.poll() is not None:
                say(log_path.read_text(errors="replace"))
                sys.exit(f"demo: the driver exited with {proc.returncode} during startup")
            if is_socket(sock):
                try:
                    identity.Probe(pb.ProbeRequest(), timeout=1)
                    break
                except grpc.RpcError:
                    pass
            if time.monotonic() > deadline:
                sys.exit(f"demo: the driver was not ready after {opts.timeout}s")
            time.sleep(0.05)
        say(f"listening on {endpoint} (pid {proc.pid})")

        step("GetPluginInfo (node-driver-registrar registers the plugin)")
        info = identity.GetPluginInfo(pb.GetPluginInfoRequest(), timeout=10)
        say(f"name:           {info.name}")
        say(f"vendor_version: {info.vendor_version}")
        for k, v in sorted(info.manifest.items()):
            say(f"manifest:       {k}={v}")

        step("NodeGetInfo (kubelet learns the node id)")
        ninfo = node.NodeGetInfo(pb.NodeGetInfoRequest(), timeout=10)
        say(f"node_id:        {ninfo.node_id}")
        if ninfo.max_volumes_per_node:
            say(f"max_volumes:    {ninfo.max_volumes_per_node}")

        step("Probe (the liveness-probe sidecar)")
        probe = identity.Probe(pb.ProbeRequest(), timeout=10)
        say(f"ready:          {probe.ready.value if probe.HasField('ready') else '(unset)'}")

        step("NodeGetCapabilities (kubelet, before a mount)")
        caps = node.NodeGetCapabilities(pb.NodeGetCapabilitiesRequest(), timeout=10)
        if caps.capabilities:
            for c in caps.capabilities:
                say(f"capability:     {pb.NodeServiceCapability.RPC.Type.Name(c.rpc.type)}")
        else:
            say("capabilities:   none (no staging, no stats, no expansion)")

        channel.close()
        channel = None

        step("Stopping the driver with SIGTERM")
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=opts.timeout)
        except subprocess.TimeoutExpired:
            sys.exit(f"demo: the driver did not exit within {opts.timeout}s of SIGTERM")
        say(f"exit code:      {rc}")
        say(f"socket removed: {'yes' if not os.path.lexists(sock) else 'NO'}")

        step("Driver log")
        say(log_path.read_text(errors="replace").rstrip() or "(empty)")

        clean = rc == 0 and not os.path.lexists(sock)
        say("\n" + ("The driver exited cleanly." if clean else "The driver did NOT exit cleanly."))
        return 0 if clean else 1
    finally:
        if channel is not None:
            channel.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
