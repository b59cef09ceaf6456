#!/usr/bin/env python3
"""Unary RTT benchmark: NodeGetInfo against the release driver over a unix socket.

    python3 Benchmarks/unary_rtt.py --driver .build/release/secrets-store-csi-driver \\
        --bench-bin .build/release/csi-bench --json out/unary_rtt.json

Starts the driver on a socket in a temporary directory, runs csi-bench (our Swift
gRPC client) at each concurrency, then, if h2load (Debian nghttp2-client) is
installed, an independent HTTP/2 load generator over the same socket. Stops the
driver with SIGTERM and fails unless it exits 0 and removes its socket.
Python standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import say, wait_accepting

REPO = Path(__file__).resolve().parents[1]
METHOD = "/csi.v1.Node/NodeGetInfo"
# gRPC framing of an empty NodeGetInfoRequest: not compressed, length 0.
EMPTY_GRPC_MESSAGE = b"\x00\x00\x00\x00\x00"


def process_stats(pid: int) -> dict:
    """Peak and current resident size and CPU seconds of a running process (Linux /proc)."""
    out: dict = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[{"VmHWM": "peak_rss_kib", "VmRSS": "rss_kib"}[key]] = int(value.split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        out["cpu_user_s"] = int(fields[11]) / ticks
        out["cpu_system_s"] = int(fields[12]) / ticks
    except (OSError, ValueError, IndexError):
        pass
    return out


# csi-bench prints: concurrency calls calls/s p50 p90 p99 max (latencies in µs).
BENCH_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")


def run_csi_bench(bench: Path, endpoint: str, opts) -> list[dict]:
    cmd = [str(bench), "--endpoint", endpoint, "--concurrency", opts.concurrency,
           "--seconds", str(opts.seconds), "--warmup-calls", str(opts.warmup_calls)]
    say("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    say(proc.stdout.rstrip())
    if proc.returncode != 0:
        raise RuntimeError(f"csi-bench exited with {proc.returncode}")
    rows = []
    for line in proc.stdout.splitlines():
        m = BENCH_ROW.match(line)
        if m:
            c, calls, rate, p50, p90, p99, mx = map(int, m.groups())
            rows.append({"concurrency": c, "calls": calls, "calls_per_s": rate,
                         "p50_us": p50, "p90_us": p90, "p99_us": p99, "max_us": mx})
    if not rows:
        raise RuntimeError("csi-bench printed no result rows")
    return rows


def grpc_status_of_one_call(sock: Path) -> str | None:
    """One call with curl, to check that what h2load sends is a valid gRPC request."""
    curl = shutil.which("curl")
    if curl is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".bin") as body:
        body.write(EMPTY_GRPC_MESSAGE)
        body.flush()
        proc = subprocess.run(
            [curl, "-sS", "-v", "--http2-prior-knowledge", "--unix-socket", str(sock),
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             "--data-binary", f"@{body.name}", "-o", "/dev/null", f"http://localhost{METHOD}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    m = re.search(r"^< grpc-status: (\d+)", proc.stderr, re.MULTILINE)
    return m.group(1) if m else "missing"


def parse_duration_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


def run_h2load(h2load: str, sock: Path, body: Path, concurrency: int, opts) -> dict:
    """One HTTP/2 connection with `concurrency` streams in flight, like csi-bench."""
    cmd = [h2load, "-B", f"unix:{sock}", "-c", "1", "-t", "1", "-m", str(concurrency),
           "-D", str(max(1, round(opts.seconds))), "--warm-up-time", "1",
           "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
           f"http://localhost{METHOD}"]
    say("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout
    if proc.returncode != 0:
        say(out.rstrip())
        raise RuntimeError(f"h2load exited with {proc.returncode}")
    result: dict = {"concurrency": concurrency}
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    if m:
        result["req_per_s"] = float(m.group(1))
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if m:
        total, done, ok, failed, errored = map(int, m.groups())
        result.update(requests=total, done=done, succeeded=ok, failed=failed, errored=errored)
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:
        mn, mx, mean, sd = (parse_duration_us(x) for x in m.groups())
        result.update(min_us=mn, max_us=mx, mean_us=mean, sd_us=sd)
    return result


def print_h2load_table(rows: list[dict]) -> None:
    say("concurrency    requests      req/s   mean µs     sd µs    max µs   failed")
    for r in rows:
        say(f"{r['concurrency']:>11}{r.get('succeeded', 0):>12}{r.get('req_per_s', 0):>11.0f}"
            f"{r.get('mean_us', 0):>10.0f}{r.get('sd_us', 0):>10.0f}{r.get('max_us', 0):>10.0f}"
            f"{r.get('failed', 0) + r.get('errored', 0):>9}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", required=True, help="path to the (release) driver binary")
    ap.add_argument("--bench-bin", default=str(REPO / ".build/release/csi-bench"),
                    help="path to csi-bench (default: %(default)s)")
    ap.add_argument("--nodeid", default="bench-node")
    ap.add_argument("--driver-arg", action="append", default=[], metavar="ARG",
                    help="extra driver flag, repeatable (e.g. --driver-arg=--log-level=warning; "
                         "by default each NodeGetInfo logs one info line, which is part of what is measured)")
    ap.add_argument("--concurrency", default="1,4,16", help="comma-separated concurrencies")
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per concurrency")
    ap.add_argument("--warmup-calls", type=int, default=2000)
    ap.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    ap.add_argument("--no-h2load", action="store_true", help="skip the h2load cross-check")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="seconds to wait for startup and for shutdown")
    opts = ap.parse_args()

    driver = Path(opts.driver).resolve()
    bench = Path(opts.bench_bin).resolve()
    for binary, hint in ((driver, "make release"), (bench, "make release")):
        if not os.access(binary, os.X_OK):
            sys.exit(f"unary_rtt: no executable at {binary} (run {hint})")
    levels = [int(x) for x in opts.concurrency.split(",") if x.strip()]

    results: dict = {
        "benchmark": "unary_rtt",
        "method": METHOD,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"machine": platform.machine(), "kernel": platform.release(), "cpus": os.cpu_count(),
                 "loadavg_1m_at_start": os.getloadavg()[0]},
        "driver": str(driver),
        "bench_bin": str(bench),
        "config": {"concurrency": levels, "seconds": opts.seconds, "warmup_calls": opts.warmup_calls,
                   "nodeid": opts.nodeid, "driver_args": opts.driver_arg},
    }
    failures: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="csi-bench-", dir="/tmp"))
    sock = tmp / "csi.sock"
    endpoint = f"unix://{sock}"
    log_path = tmp / "driver.log"
    proc = None
    try:
        cmd = [str(driver), "--endpoint", endpoint, "--nodeid", opts.nodeid, "--state-dir", str(tmp / "state"), *opts.driver_arg]
        say("$ " + " ".join(cmd))
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_accepting(sock, proc, log_path, opts.timeout, prefix="unary_rtt: ", what="the driver", interval=0.02)
        say(f"driver listening on {endpoint} (pid {proc.pid})\n")

        say("== csi-bench (Swift gRPC client, one HTTP/2 connection)")
        try:
            results["csi_bench"] = run_csi_bench(bench, endpoint, opts)
        except RuntimeError as e:
            failures.append(str(e))

        say("\n== h2load (nghttp2's load generator, one HTTP/2 connection)")
        h2load = shutil.which("h2load")
        if opts.no_h2load:
            results["h2load"] = {"skipped": "--no-h2load"}
            say("skipped (--no-h2load)")
        elif h2load is None:
            results["h2load"] = {"skipped": "h2load not installed (Debian package nghttp2-client)"}
            say("skipped: h2load is not installed (apt-get install nghttp2-client)")
        else:
            # h2load counts HTTP 200 as success and cannot see gRPC trailers: check one call first.
            status = grpc_status_of_one_call(sock)
            if status not in (None, "0"):
                failures.append(f"a NodeGetInfo call sent as h2load sends it got grpc-status {status}")
            body = tmp / "request.bin"
            body.write_bytes(EMPTY_GRPC_MESSAGE)
            rows = []
            try:
                for level in levels:
                    rows.append(run_h2load(h2load, sock, body, level, opts))
            except RuntimeError as e:
                failures.append(str(e))
            for r in rows:
                if r.get("failed", 0) or r.get("errored", 0) or r.get("done") != r.get("succeeded"):
                    failures.append(f"h2load at concurrency {r['concurrency']}: not every request succeeded")
            results["h2load"] = {"grpc_status_checked_with_curl": status, "runs": rows}
            print_h2load_table(rows)

        results["driver_process"] = process_stats(proc.pid)

        say("\n== stopping the driver with SIGTERM")
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=opts.timeout)
        except subprocess.TimeoutExpired:
            rc = None
            failures.append(f"the driver did not exit within {opts.timeout}s of SIGTERM")
        removed = not os.path.lexists(sock)
        results["driver_exit_code"] = rc
        results["socket_removed"] = removed
        say(f"exit code: {rc}, socket removed: {'yes' if removed else 'NO'}")
        if rc not in (0, None):
            failures.append(f"the driver exited with {rc} after SIGTERM")
        if not removed:
            failures.append("the driver left its socket file behind")
        stats = results["driver_process"]
        if stats:
            say(f"driver peak RSS {stats.get('peak_rss_kib', 0) / 1024:.1f} MiB, CPU "
                f"{stats.get('cpu_user_s', 0):.2f}s user + {stats.get('cpu_system_s', 0):.2f}s system")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if failures and log_path.exists():
            say("\n== driver log")
            say(log_path.read_text(errors="replace").rstrip() or "(empty)")
        shutil.rmtree(tmp, ignore_errors=True)

    results["failures"] = failures
    if opts.json:
        out = Path(opts.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        say(f"\nresults written to {out}")
    for f in failures:
        say(f"FAILED: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
