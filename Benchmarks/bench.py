#!/usr/bin/env python3
"""The standard load scenarios (`make bench`): runs csi-load for each, checks
each against its targets, writes the JSON results and one HTML report.

    python Benchmarks/bench.py [--bin-dir .build/release] [--out-dir .build/bench]
                               [--only a-c1,b-burst250] [--baseline DIR] [--no-fail]
                               [--kubelet-fs ext4|tmp]

Scenarios (each starts its own driver and reference provider, release build):
  a-c1         publish/unpublish cycles, concurrency 1, zero-latency provider, 3 objects x 256 B
  a-c8         the same at concurrency 8 (the driver's default loop count: one per usable core, at most 8)
  a-c8-loops1  a-c8 with --event-loops=1, and
  a-c8-loops2  with --event-loops=2: the scaling table (the step from one core to two)
  b-burst250   250 pods published at once, provider latency 50 ms
  b-burst250-nojournal  the same with the kubelet root on an ext4 image without a journal
               (mkfs.ext4 -O ^has_journal, loop-mounted for the scenario)
  c-live1000   1 000 live volumes, kubelet republishing every 60-90 s, rotation every 2 min,
               a secret changed at 30 s, about 3.5 minutes
  d-500plus100 500 pods live and republishing (as if running for a while), then 100 start at once
               at 40 s (the issue's question), rotation every 2 min, provider latency ~50 ms
  e-cpu-pair   the driver's CPU time (utime+stime from /proc/<pid>/stat) per publish+unpublish
               pair over a fixed 5 000 cycles at concurrency 1 (driver.cpu_per_pair_us); for
               instruction counts, which do not depend on the machine's load, see
               Benchmarks/pair_cost.py --mode callgrind (make callgrind)

Pod directories live on a fresh journaled ext4 image, loop-mounted, as a node's
/var/lib/kubelet does (--kubelet-fs tmp: this machine's journal-less /tmp instead,
where each mkdir costs several times more).

Every scenario has targets, errors==0 among them: csi-load reads every published
volume back (objects, bytes, layout) and counts a wrong or missing one as an error,
and it times latency from each call's scheduled time. The exit status is 3 when a
target was missed, 1 when a run could not be made, else 0; --no-fail (make bench
BENCH_NO_FAIL=1) reports misses without failing, for exploratory runs. Needs root.
Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMON = ["--objects", "3", "--object-size", "256"]

# Driver CPU per publish+unpublish pair (e-cpu-pair), µs, kernel time included. The goal is
# 250 µs; this target is not that goal. Measured on the shared 2-core development VM while
# other builds ran: main 894 µs, this branch 956 and 1 334 µs (the spread is the machine's;
# user-space instructions per pair are 12 % fewer, make callgrind). It guards against a large
# regression only; lower it once measured on a quiet machine, and quote instruction counts.
CPU_PAIR_TARGET_US = 1500

# No scenario injects faults: every call must succeed and every volume hold what the provider serves.
NO_ERRORS = ["errors<=0", "verify_errors<=0"]

SCENARIOS = [
    {
        "name": "a-c1",
        "title": "publish/unpublish cycles at concurrency 1, zero-latency provider, 3 objects x 256 B",
        "args": ["--workload", "cycles", "--concurrency", "1", "--duration", "10s", "--warmup", "2s",
                 "--provider-latency", "0"],
        "targets": ["first_publish.p50_ms<=0.5", "first_publish.p99_ms<=2",
                    "unpublish.p50_ms<=0.5", "unpublish.p99_ms<=2", *NO_ERRORS],
    },
    {
        "name": "a-c8",
        "title": "publish/unpublish cycles at concurrency 8, zero-latency provider, 3 objects x 256 B",
        "args": ["--workload", "cycles", "--concurrency", "8", "--duration", "10s", "--warmup", "2s",
                 "--provider-latency", "0"],
        "targets": ["cycles_per_s>=2000", *NO_ERRORS],
    },
    # The scaling table: a-c8 with one loop and with two. No throughput target of their own
    # (a-c8 has one); the report puts them side by side.
    *[{
        "name": f"a-c8-loops{n}",
        "title": f"a-c8 with --event-loops={n}",
        "args": ["--workload", "cycles", "--concurrency", "8", "--duration", "10s", "--warmup", "2s",
                 "--provider-latency", "0", "--driver-arg", f"--event-loops={n}"],
        "targets": [*NO_ERRORS],
    } for n in (1, 2)],
    {
        "name": "b-burst250",
        "title": "250 pods published at once, provider latency 50 ms",
        "args": ["--pods", "250", "--arrival", "burst", "--duration", "15s", "--provider-latency", "50ms"],
        "targets": ["first_publish.p99_ms<=80", *NO_ERRORS],
    },
    {
        "name": "b-burst250-nojournal",
        "title": "250 pods published at once, provider latency 50 ms, kubelet root on ext4 without a journal",
        "args": ["--pods", "250", "--arrival", "burst", "--duration", "15s", "--provider-latency", "50ms"],
        "kubelet_fs": "ext4-nojournal",
        # The goal: within 1.2x of the journaled burst's target.
        "targets": ["first_publish.p99_ms<=96", *NO_ERRORS],
    },
    {
        "name": "c-live1000",
        "title": "1 000 live volumes, republish every 60-90 s, rotation every 2 min, secret changed at 30 s",
        "args": ["--pods", "1000", "--arrival", "rate:100", "--republish", "60s-90s", "--duration", "210s",
                 "--enable-secret-rotation", "--rotation-poll-interval", "2m", "--change-secret-at", "30s",
                 "--provider-latency", "normal:50ms,10ms"],
        "targets": ["driver.rss_max_mib<=30", "driver.cpu_steady_pct<=2", "propagation.stale_at_end<=0", *NO_ERRORS],
    },
    {
        "name": "d-500plus100",
        "title": "500 pods live and republishing, then 100 start at once at 40 s",
        "args": ["--pods", "500", "--arrival", "rate:100", "--spread-first-republish", "--wave", "100@40s",
                 "--duration", "60s",
                 "--enable-secret-rotation", "--rotation-poll-interval", "2m", "--provider-latency", "normal:50ms,10ms"],
        # The wave of 100 measured ~90 ms p99 before latency counted from the scheduled arrival
        # (~104 ms after, on a loaded machine); 50 ms ± 10 ms at the provider alone puts p99 near
        # 75 ms. RSS: 31 MiB measured with the burst in flight; 32 MiB is the 1 000-volume goal.
        "targets": ["wave1.first_publish.p99_ms<=120", "initial.first_publish.p99_ms<=100", "driver.rss_max_mib<=32",
                    *NO_ERRORS],
    },
    {
        "name": "e-cpu-pair",
        "title": "driver CPU per publish+unpublish pair, 5 000 cycles at concurrency 1, zero-latency provider",
        "args": ["--workload", "cycles", "--concurrency", "1", "--cycles", "5000", "--duration", "120s", "--warmup", "0s",
                 "--provider-latency", "0", "--driver-arg", "--loop-spin", "--driver-arg", "0"],
        # CPU time the driver spends, with its loop spin off (spinning is CPU bought for latency,
        # not work; off is the default now, the flag stays so that older builds compare the same);
        # docs/performance.md has the measured values and the instruction counts.
        "targets": ["driver.cpu_per_pair_us<=CPU_PAIR_TARGET", *NO_ERRORS],
    },
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", default=str(REPO / ".build/release"))
    ap.add_argument("--out-dir", default=str(REPO / ".build/bench"))
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--baseline", default="", help="a directory (or file) of earlier results to compare with")
    ap.add_argument("--no-fail", action="store_true",
                    help="exit 0 even when a target is missed (exploratory runs); misses are still reported")
    ap.add_argument("--kubelet-fs", choices=("ext4", "tmp"), default="ext4",
                    help="where the pod directories live: ext4 = a fresh journaled ext4 image, loop-mounted, "
                         "as a node's /var/lib/kubelet is (the default); tmp = this machine's /tmp as it is")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (the driver mounts tmpfs)")
    bins = Path(opts.bin_dir).resolve()
    for b in ("csi-load", "secrets-store-csi-driver", "csi-reference-provider"):
        if not (bins / b).is_file():
            sys.exit(f"bench: {bins / b} is missing (swift build -c release)")
    out = Path(opts.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    only = {s for s in opts.only.split(",") if s}
    unknown = only - {s["name"] for s in SCENARIOS}
    if unknown:
        sys.exit(f"bench: unknown scenario {', '.join(sorted(unknown))}")

    return run_scenarios(opts, bins, out, only)


@contextlib.contextmanager
def kubelet_filesystem(kind: str):
    """Yields the directory csi-load makes its temporary tree in (kubelet root included).

    A pod's first publish makes its target directory, so mkdir is on the measured
    path. This machine's root file system is ext4 without a journal, where mkdir
    costs ~200 µs after heavy churn (ext4 scans for recently deleted inodes it must
    not reuse); on a journaled ext4, as nodes run, it costs ~30 µs. The default is
    therefore a journaled ext4 image, loop-mounted for the run.
    """
    if kind == "tmp":
        yield "/tmp"
        return
    journal = kind == "ext4"
    what = "a journaled ext4" if journal else "an ext4 without a journal"
    work = Path(tempfile.mkdtemp(prefix="csi-bench-fs-"))
    image, mnt = work / "kubelet.ext4", work / "mnt"
    try:
        mnt.mkdir()
        with open(image, "wb") as f:
            f.truncate(2 << 30)  # sparse
        subprocess.run(["mkfs.ext4", "-q", "-F", *([] if journal else ["-O", "^has_journal"]), str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        shutil.rmtree(work, ignore_errors=True)
        print(f"bench: cannot make {what} ({e}); using /tmp as it is", flush=True)
        yield "/tmp"
        return
    print(f"bench: kubelet root on {what} image, loop-mounted at {mnt}", flush=True)
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def run_scenarios(opts: argparse.Namespace, bins: Path, out: Path, only: set[str]) -> int:
    verdicts: list[tuple[str, str]] = []
    files: list[str] = []
    started = time.monotonic()
    chosen = [s for s in SCENARIOS if not only or s["name"] in only]
    # One file system for the scenarios that use the default, made once; a scenario that
    # names its own (the journal-less burst) gets a fresh one for itself.
    with contextlib.ExitStack() as stack:
        shared = None
        for s in chosen:
            fs = s.get("kubelet_fs")
            if fs and opts.kubelet_fs != "tmp":
                with kubelet_filesystem(fs) as own:
                    run_one(s, bins, out, own, verdicts, files)
                continue
            if shared is None:
                shared = stack.enter_context(kubelet_filesystem(opts.kubelet_fs))
            run_one(s, bins, out, shared, verdicts, files)
    return summarize(opts, out, verdicts, files, started)


def run_one(s: dict, bins: Path, out: Path, tmp_parent: str, verdicts: list, files: list) -> None:
    result = out / f"{s['name']}.json"
    result.unlink(missing_ok=True)
    cmd = [str(bins / "csi-load"), "--driver-bin", str(bins / "secrets-store-csi-driver"),
           "--provider-bin", str(bins / "csi-reference-provider"), "--scenario", s["name"], "--title", s["title"],
           "--out", str(result), "--tmp-parent", tmp_parent, *COMMON, *s["args"]]
    for t in s["targets"]:
        cmd += ["--target", t.replace("CPU_PAIR_TARGET", str(CPU_PAIR_TARGET_US))]
    print(f"\n### {s['name']}: {s['title']}", flush=True)
    rc = subprocess.run(cmd).returncode
    if rc in (0, 3) and result.exists():
        files.append(str(result))
        verdicts.append((s["name"], "PASS" if rc == 0 else "FAIL"))
    else:
        verdicts.append((s["name"], f"NOT RUN (csi-load exit {rc})"))


def summarize(opts: argparse.Namespace, out: Path, verdicts: list, files: list, started: float) -> int:
    print(f"\n### summary ({time.monotonic() - started:.0f} s)")
    for name, v in verdicts:
        print(f"  {v:24} {name}")
    if files:
        report = [sys.executable, str(REPO / "Benchmarks/report.py"), *files, "-o", str(out / "report.html")]
        if opts.baseline:
            report += ["--baseline", opts.baseline]
        print()
        subprocess.run(report, check=False)
    if any(v.startswith("NOT RUN") for _, v in verdicts):
        return 1
    if any(v == "FAIL" for _, v in verdicts):
        if opts.no_fail:
            print("bench: targets missed (not failing: --no-fail)")
            return 0
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
