#!/usr/bin/env python3
"""Regenerates the release driver's link order (`make hot-symbols`): the functions a
node's driver runs, placed together at the start of its code.

    python Benchmarks/hot_symbols.py [--bin-dir .build/release] [--out Sources/secrets-store-csi-driver/hot-symbols.txt]

Why: the kernel maps a program's code on first touch in 64 KiB neighbourhoods
(fault-around), and the linker's default order scatters the few thousand functions
the driver runs among the ~70 000 it links (the Swift runtime, FoundationEssentials,
GRPCCore...). Listed first, they share fewer neighbourhoods and less code is resident
(docs/performance.md, "Resident size").

How: the release driver runs under valgrind's callgrind (which records every function
that executes, by its symbol) through a standalone csi-load run that exercises what a
node does: start, first mounts (one at a time and a burst), republish, timer rotation
with a changed secret, unpublish, shutdown. Every function of the driver binary that ran is
written, hottest first, one mangled symbol per line, as lld's `--symbol-ordering-file`
reads it. Symbols that later disappear from the code are skipped by the linker; a
stale list costs resident memory, never correctness. Needs root, valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchlib import callgrind_ready_driver

REPO = Path(__file__).resolve().parents[1]


def functions_of(dump: Path, binary_name: str) -> Counter:
    """Self instructions per function of the object whose path ends in `binary_name`
    (callgrind's compressed names: `ob=(n) path` / `fn=(n) name` define, `(n)` refers)."""
    obs: dict[str, str] = {}
    fns: dict[str, str] = {}
    cost: Counter = Counter()
    current_ob = ""
    current_fn = None
    in_call = False

    def name(table: dict[str, str], value: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "")

    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("ob="):
            current_ob = name(obs, line[3:])
        elif line.startswith("fn="):
            f = name(fns, line[3:])
            current_fn = f if current_ob.endswith("/" + binary_name) else None
            in_call = False
        elif line.startswith(("cfn=", "cob=", "cfi=", "cfl=")):
            # callee names are defined here too; keep the tables complete
            if line.startswith("cfn="):
                name(fns, line[4:])
            elif line.startswith("cob="):
                name(obs, line[4:])
        elif line.startswith("calls="):
            in_call = True  # the next cost line is the call's inclusive cost, not self
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            if in_call:
                in_call = False
                continue
            if current_fn:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    cost[current_fn] += int(parts[1])
                elif current_fn not in cost:
                    cost[current_fn] += 0
    return cost


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", default=str(REPO / ".build/release"))
    ap.add_argument("--out", default=str(REPO / "Sources/secrets-store-csi-driver/hot-symbols.txt"))
    ap.add_argument("--duration", default="40s")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("hot_symbols: run as root (the driver mounts tmpfs)")
    for tool in ("valgrind", "objcopy", "cc"):
        if not shutil.which(tool):
            sys.exit(f"hot_symbols: needs {tool}")
    bins = Path(opts.bin_dir)
    work = Path(tempfile.mkdtemp(prefix="hot-symbols-"))
    try:
        driver, shim = callgrind_ready_driver(bins, work)
        wrapper = work / "driver-under-callgrind"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"exec env LD_PRELOAD={shim} valgrind --tool=callgrind --quiet --demangle=no "
            f"--callgrind-out-file={work}/callgrind.out {driver} \"$@\"\n")
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        # A node's life in small: pods arrive one by one and then 120 at once (the paths that
        # only run with several volumes in flight), republish, a secret changes and the timer
        # rotates it, pods churn, everything is torn down.
        run = subprocess.run(
            [str(bins / "csi-load"), "--driver-bin", str(wrapper),
             "--provider-bin", str(bins / "csi-reference-provider"),
             "--pods", "40", "--arrival", "rate:4", "--wave", "120@14s", "--republish", "6s-9s", "--churn", "0.5",
             "--enable-secret-rotation", "--rotation-poll-interval", "12s", "--change-secret-at", "8s",
             "--driver-arg", "--rotation-min-interval=10s",
             "--duration", opts.duration, "--call-timeout", "60s", "--tmp-parent", str(work)],
            capture_output=True, text=True)
        if run.returncode not in (0, 3):
            print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
            sys.exit(f"hot_symbols: csi-load failed (exit {run.returncode})")
        dump = work / "callgrind.out"
        if not dump.exists():
            sys.exit("hot_symbols: callgrind wrote no dump")
        cost = functions_of(dump, driver.name)
        # A name defined more than once (local helpers the compiler names alike in several
        # modules) would give every section that defines it a place up front, and with it
        # whole object files' code that never runs: such names are left out.
        defined: Counter = Counter()
        nm = subprocess.run(["nm", "--defined-only", str(driver)], capture_output=True, text=True, check=True).stdout
        for line in nm.splitlines():
            parts = line.split()
            if len(parts) == 3:
                defined[parts[2]] += 1
        names = [n for n, _ in sorted(cost.items(), key=lambda kv: (-kv[1], kv[0]))
                 if n and not n.startswith("0x") and defined[n] == 1]
        header = ("# The release driver's link order: functions that ran in a node-like csi-load run, hottest\n"
                  "# first (lld --symbol-ordering-file). Generated by Benchmarks/hot_symbols.py (make\n"
                  "# hot-symbols); regenerate after larger changes. Stale names are skipped by the linker.\n")
        Path(opts.out).write_text(header + "\n".join(names) + "\n")
        print(f"hot_symbols: {len(names)} functions ran; written to {opts.out}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
