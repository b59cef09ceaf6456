#!/usr/bin/env python3
"""NodePublishVolume / NodeUnpublishVolume latency with a zero-latency provider.

Starts csi-reference-provider (3 objects x 256 bytes) and the driver in
standalone mode on temporary sockets, then runs `csi-bench --workload publish`
(a separate process, so every number includes the unix socket, HTTP/2, gRPC,
the provider call, the tmpfs mount, the atomic write and the unmount).

    python Benchmarks/mount_latency.py --bin-dir .build/release [--concurrency 1,8] [--seconds 5]

Needs root (tmpfs mounts).
"""

from __future__ import annotations

import argparse
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


def is_socket(p: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(p).st_mode)
    except FileNotFoundError:
        return False


def wait_socket(p: Path, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not is_socket(p):
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"mount_latency: {p} did not appear (exit code {proc.poll()})")
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", default=str(REPO / ".build/release"))
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--seconds", default="5")
    ap.add_argument("--provider-latency", default="0", help="reference provider --latency, e.g. 0 or 50ms")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("mount_latency: run as root (tmpfs mounts)")
    bins = Path(opts.bin_dir).resolve()

    tmp = Path(tempfile.mkdtemp(prefix="csi-mbench-", dir="/tmp"))
    procs: list[subprocess.Popen] = []
    try:
        providers, data, spcs = tmp / "providers", tmp / "store", tmp / "classes"
        for d in (providers, data, spcs):
            d.mkdir()
        for name in ("a", "b", "c"):
            (data / name).write_bytes(os.urandom(128).hex().encode())  # 256 bytes each
        objects = json.dumps([{"objectName": n} for n in ("a", "b", "c")])
        (spcs / "bench.yaml").write_text(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\n"
            "metadata: {name: bench, namespace: default}\n"
            f"spec:\n  provider: reference\n  parameters:\n    objects: {json.dumps(objects)}\n")
        psock, dsock = providers / "reference.sock", tmp / "csi.sock"
        procs.append(subprocess.Popen(
            [str(bins / "csi-reference-provider"), "--endpoint", f"unix://{psock}", "--data-dir", str(data),
             "--latency", opts.provider_latency, "--log-level", "warning"],
            stdin=subprocess.DEVNULL))
        wait_socket(psock, procs[-1])
        procs.append(subprocess.Popen(
            [str(bins / "secrets-store-csi-driver"), "--endpoint", f"unix://{dsock}", "--nodeid", "bench-node",
             "--provider-volume", str(providers), "--additional-provider-volume-paths", "",
             "--spc-dir", str(spcs), "--log-level", "warning", "--state-dir", str(tmp / "state"),
             "--kubelet-root-dir", str(tmp / "kubelet")],
            stdin=subprocess.DEVNULL))
        wait_socket(dsock, procs[-1])
        print(f"driver pid {procs[-1].pid}, provider pid {procs[0].pid}; 3 objects x 256 bytes, provider latency {opts.provider_latency}")
        rc = subprocess.run(
            [str(bins / "csi-bench"), "--endpoint", f"unix://{dsock}", "--workload", "publish",
             "--target-root", str(tmp / "kubelet"), "--concurrency", opts.concurrency,
             "--seconds", opts.seconds, "--warmup-calls", "200"]).returncode
        with open(f"/proc/{procs[-1].pid}/status") as f:
            rss = next(l for l in f if l.startswith("VmHWM")).split()[1]
        print(f"driver peak RSS: {int(rss) / 1024:.1f} MiB")
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        return rc
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        subprocess.run(f"grep -o ' {tmp}/[^ ]*' /proc/self/mounts | xargs -r -n1 umount -l", shell=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
