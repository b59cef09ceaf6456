#!/usr/bin/env python3
"""What one publish+unpublish pair costs the driver: CPU time, instructions, system calls.

    python3 Benchmarks/pair_cost.py [--bin-dir .build/release] [--mode cpu|callgrind|strace]
                                    [--cycles N] [--warmup N] [--repeat R] [--json out.json]
                                    [--driver-arg=ARG ...]

Starts the reference provider and the driver (standalone, --spc-dir) in a temporary
directory, warms the driver up with csi-bench publish cycles (3 objects x 256 B, one
worker, its own connection), then measures a fixed number of cycles run by a second
csi-bench (one worker, NodePublishVolume then NodeUnpublishVolume of one pod volume):

  cpu        the driver's utime+stime (/proc/<pid>/stat) over the cycles, in µs per pair;
             --repeat runs that many measured batches on the same driver and reports each.
  callgrind  the driver runs under valgrind --tool=callgrind; after the warm-up the counters
             are zeroed and dumped (callgrind_control) around a batch of N cycles and around a
             batch of 2N cycles; instructions per pair = (I(2N) - I(N)) / N, so the cost of
             the client's connection setup cancels out. Prints the top functions (inclusive and
             self) of the 2N dump; the dump stays in --keep-dir for callgrind_annotate/kcachegrind.
  strace     strace -f -c attached to the driver over the cycles: each system call's count per
             pair. On one event loop unless --driver-arg=--event-loops says otherwise: with
             several, whether kubelet's connection and the volume share a loop varies per run
             (the target path's hash is seeded per process), and a loop hop adds ~12 calls.

Instruction counts do not depend on the machine's load (the driver's loop may spin a
little more or less, see --driver-arg=--loop-spin --driver-arg=0, the default here for
callgrind so that waiting is not counted as work). Needs root (the driver mounts tmpfs).
Python standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import callgrind_ready_driver, context_switches, cpu_split, say, stop, wait_accepting

REPO = Path(__file__).resolve().parents[1]
OBJECTS = 3
OBJECT_SIZE = 256


class Rig:
    """The provider, the driver (optionally under a wrapper command) and csi-bench."""

    def __init__(self, bins: Path, work: Path, driver_args: list[str], wrapper: list[str], driver: Path):
        self.bins, self.work = bins, work
        providers, store, classes = work / "providers", work / "store", work / "classes"
        self.kubelet = work / "kubelet"
        for d in (providers, store, classes, self.kubelet):
            d.mkdir(parents=True, exist_ok=True)
        names = [f"secret-{i}" for i in range(OBJECTS)]
        for i, name in enumerate(names):
            (store / name).write_bytes(bytes((97 + (i + j) % 26) for j in range(OBJECT_SIZE)))
        objects = json.dumps([{"objectName": n} for n in names])
        (classes / "default-bench.yaml").write_text(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\n"
            "metadata:\n  name: bench\n  namespace: default\nspec:\n  provider: reference\n"
            f"  parameters:\n    objects: {json.dumps(objects)}\n")
        psock = providers / "reference.sock"
        self.plog = work / "provider.log"
        self.provider = subprocess.Popen(
            [str(bins / "csi-reference-provider"), "--endpoint", f"unix://{psock}", "--data-dir", str(store)],
            stdout=open(self.plog, "wb"), stderr=subprocess.STDOUT)
        wait_accepting(psock, self.provider, self.plog, 30, prefix="pair_cost: ", what=self.plog.stem)
        self.socket = work / "csi.sock"
        self.dlog = work / "driver.log"
        self.driver = subprocess.Popen(
            [*wrapper, str(driver), "--endpoint", f"unix://{self.socket}",
             "--nodeid", "pair-cost-node", "--provider-volume", str(providers),
             "--additional-provider-volume-paths", "", "--spc-dir", str(classes), "--log-level", "warning",
             "--kubelet-root-dir", str(self.kubelet),
             # Its own state directory (records are written as by default), not the node-wide
             # one that any other driver on the machine may adopt volumes from.
             *([] if "--state-dir" in driver_args else ["--state-dir", self.state_dir()]),
             *driver_args],
            stdout=open(self.dlog, "wb"), stderr=subprocess.STDOUT)
        wait_accepting(self.socket, self.driver, self.dlog, 120 if wrapper else 30, prefix="pair_cost: ",
                       what=self.dlog.stem)

    def state_dir(self) -> str:
        """On a tmpfs, as the default /run is on a node (this machine's /run may be a disk):
        the driver's own, under the work directory, detached with the rest at the end."""
        path = self.work / "state"
        path.mkdir(mode=0o700, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700,nosuid,nodev,noexec", "tmpfs", str(path)],
                       check=False)
        return str(path)

    def cycles(self, n: int) -> None:
        """n publish+unpublish cycles of one pod volume, one worker, a fresh connection."""
        out = subprocess.run(
            [str(self.bins / "csi-bench"), "--endpoint", f"unix://{self.socket}", "--workload", "publish",
             "--concurrency", "1", "--cycles", str(n), "--warmup-calls", "0", "--target-root", str(self.kubelet),
             "--spc", "bench", "--loop-spin-us", "0"],
            capture_output=True, text=True)
        m = re.search(r"^\s*1\s+publish\s+(\d+)", out.stdout, re.M)
        if out.returncode != 0 or not m or int(m.group(1)) != n:
            say(out.stdout + out.stderr)
            say(self.dlog.read_text(errors="replace")[-4000:])
            sys.exit(f"pair_cost: csi-bench did not complete {n} cycles (exit {out.returncode})")

    def stop(self) -> None:
        for p in (self.driver, self.provider):
            stop(p)


def driver_pid(rig: Rig) -> int:
    """The driver's pid (under valgrind the wrapper execs it, so it is the same process)."""
    return rig.driver.pid


def mode_cpu(rig: Rig, opts) -> dict:
    rig.cycles(opts.warmup)
    pid = driver_pid(rig)
    per_pair, user, kernel, switches = [], [], [], []
    for _ in range(opts.repeat):
        u0, k0, s0 = *cpu_split(pid), context_switches(pid)
        rig.cycles(opts.cycles)
        u1, k1, s1 = *cpu_split(pid), context_switches(pid)
        switches.append((s1 - s0) / opts.cycles)
        user.append((u1 - u0) * 1e6 / opts.cycles)
        kernel.append((k1 - k0) * 1e6 / opts.cycles)
        per_pair.append(user[-1] + kernel[-1])
    mid = len(per_pair) // 2
    median = sorted(per_pair)[mid]
    say(f"driver CPU per publish+unpublish pair ({opts.cycles} cycles x {opts.repeat}): "
        + ", ".join(f"{v:.0f}" for v in per_pair) + f" µs; median {median:.0f} µs "
        + f"(user space {sorted(user)[mid]:.0f}, kernel {sorted(kernel)[mid]:.0f}: medians of each); "
        + f"{sorted(switches)[mid]:.1f} context switches per pair")
    return {"cycles": opts.cycles, "cpu_per_pair_us": per_pair, "median_us": median,
            "user_us": user, "kernel_us": kernel, "context_switches_per_pair": switches}


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def dump_total(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    sys.exit(f"pair_cost: no totals in {path}")


def newest_dump(out_dir: Path, seen: set[Path]) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fresh = [p for p in out_dir.glob("callgrind.out*") if p not in seen and p.stat().st_size > 0]
        if fresh:
            time.sleep(0.5)  # let callgrind finish writing
            seen.add(fresh[0])
            return fresh[0]
        time.sleep(0.2)
    sys.exit("pair_cost: callgrind wrote no dump")


def annotate(dump: Path, inclusive: str) -> str:
    text = subprocess.run(["callgrind_annotate", f"--inclusive={inclusive}", "--threshold=100", str(dump)],
                          capture_output=True, text=True).stdout
    demangler = shutil.which("swift-demangle")
    if demangler:  # Swift symbols, simplified
        text = subprocess.run([demangler, "--simplified"], input=text, capture_output=True, text=True).stdout or text
    return text


def mode_callgrind(rig: Rig, opts, out_dir: Path) -> dict:
    pid = str(driver_pid(rig))
    rig.cycles(opts.warmup)
    seen = set(out_dir.glob("callgrind.out*"))
    totals = {}
    dumps = {}
    for n in (opts.cycles, 2 * opts.cycles):
        callgrind_control("-z", pid)
        rig.cycles(n)
        callgrind_control("-d", pid)
        dumps[n] = newest_dump(out_dir, seen)
        totals[n] = dump_total(dumps[n])
    per_pair = (totals[2 * opts.cycles] - totals[opts.cycles]) / opts.cycles
    say(f"instructions: {totals[opts.cycles]:,} over {opts.cycles} cycles, {totals[2 * opts.cycles]:,} over "
        f"{2 * opts.cycles}; per publish+unpublish pair: {per_pair:,.0f}")
    top, self_ = (annotate(dumps[2 * opts.cycles], inclusive) for inclusive in ("yes", "no"))
    for title, text in (("inclusive", top), ("self", self_)):
        rows = [l for l in text.splitlines() if re.match(r"^\s*[\d,]+ \(", l)]
        say(f"\ntop {opts.top} functions by {title} instructions (per pair):")
        for row in rows[: opts.top]:
            count = int(row.split()[0].replace(",", ""))
            name = row.split(")", 1)[1].strip()
            say(f"  {count / (2 * opts.cycles):>10,.0f}  {name[:150]}")
    say(f"\ndump: {dumps[2 * opts.cycles]} (callgrind_annotate, kcachegrind)")
    return {"cycles": opts.cycles, "instructions": totals, "instructions_per_pair": per_pair}


def mode_strace(rig: Rig, opts) -> dict:
    rig.cycles(opts.warmup)
    out = rig.work / "strace.txt"
    tracer = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(driver_pid(rig))],
                              stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # strace attaches to every thread
    rig.cycles(opts.cycles)
    time.sleep(0.5)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=30)
    table = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and not line.startswith("100.00"):
            name = parts[-1]
            calls = int(parts[3])
            table[name] = calls
    say(f"system calls per publish+unpublish pair ({opts.cycles} cycles, driver threads, strace -f -c):")
    for name, calls in sorted(table.items(), key=lambda kv: -kv[1]):
        say(f"  {calls / opts.cycles:8.2f}  {name}")
    say(f"  {sum(table.values()) / opts.cycles:8.2f}  total")
    return {"cycles": opts.cycles, "syscalls_per_pair": {k: v / opts.cycles for k, v in table.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", default=str(REPO / ".build/release"))
    ap.add_argument("--mode", choices=("cpu", "callgrind", "strace"), default="cpu")
    ap.add_argument("--cycles", type=int, default=0, help="measured cycles (default: cpu 2000, callgrind 300, strace 500)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3, help="cpu: measured batches")
    ap.add_argument("--top", type=int, default=25, help="callgrind: functions listed")
    ap.add_argument("--driver-arg", action="append", default=[], help="an extra driver flag (repeatable)")
    ap.add_argument("--tmp-parent", default="/tmp", help="where the kubelet root and sockets are made")
    ap.add_argument("--keep-dir", default="", help="callgrind: where the dumps go (default: a temporary directory)")
    ap.add_argument("--json", default="", help="write the result here")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("pair_cost: run as root (the driver mounts tmpfs)")
    opts.cycles = opts.cycles or {"cpu": 2000, "callgrind": 300, "strace": 500}[opts.mode]
    bins = Path(opts.bin_dir).resolve()
    for b in ("secrets-store-csi-driver", "csi-reference-provider", "csi-bench"):
        if not (bins / b).is_file():
            sys.exit(f"pair_cost: {bins / b} is missing (swift build -c release)")
    for tool in {"callgrind": ("valgrind", "callgrind_control", "callgrind_annotate"), "strace": ("strace",)}.get(opts.mode, ()):
        if not shutil.which(tool):
            sys.exit(f"pair_cost: {tool} is not installed (apt-get install {'valgrind' if tool != 'strace' else 'strace'})")
    work = Path(tempfile.mkdtemp(prefix="csi-pair-cost-", dir=opts.tmp_parent))
    out_dir = Path(opts.keep_dir).resolve() if opts.keep_dir else work / "callgrind"
    out_dir.mkdir(parents=True, exist_ok=True)
    driver_args = list(opts.driver_arg)
    wrapper: list[str] = []
    driver = bins / "secrets-store-csi-driver"
    if opts.mode == "callgrind":
        driver, shim = callgrind_ready_driver(bins, work)
        wrapper = ["env", f"LD_PRELOAD={shim}", "valgrind", "--tool=callgrind", "--quiet",
                   f"--callgrind-out-file={out_dir}/callgrind.out.%p"]
        if "--loop-spin" not in driver_args:
            driver_args += ["--loop-spin", "0"]
    if opts.mode == "strace" and not any(a.startswith("--event-loops") for a in driver_args):
        driver_args += ["--event-loops", "1"]
    rig = None
    try:
        rig = Rig(bins, work, driver_args, wrapper, driver)
        result = {"cpu": mode_cpu, "strace": mode_strace}[opts.mode](rig, opts) if opts.mode != "callgrind" \
            else mode_callgrind(rig, opts, out_dir)
        result["mode"] = opts.mode
        result["driver_args"] = driver_args
        if opts.json:
            Path(opts.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        if rig:
            rig.stop()
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            mnt = line.split()[1]
            if mnt.startswith(str(work) + "/"):
                subprocess.run(["umount", "-l", mnt], check=False)
        if opts.keep_dir:
            shutil.rmtree(work / "kubelet", ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
