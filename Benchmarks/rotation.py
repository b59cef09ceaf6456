#!/usr/bin/env python3
"""Rotation at node scale: rotation by the driver's timer (no republish), coalescing off
and on, side by side in one run (`make bench-rotation`).

One node fixture per mode: the reference provider (data files, --stats-file), the driver
in standalone mode (--spc-dir) with `--enable-secret-rotation --rotation-poll-interval=I`,
and this script as kubelet: it publishes N volumes (pods spread over 10 service
accounts of one namespace, each pod with its own token) and never republishes them.
For each mode it measures:

  calls/interval   provider Mount calls in the interval after the change (reference
                   provider's stats file)
  driver CPU       the driver's CPU time over that interval, as % of one core (/proc/<pid>/stat)
  propagation      a secret is rewritten in the provider's data directory; every volume's
                   file is read until it shows the new bytes: p50 and max seconds after the
                   change (goal: max <= interval + jitter, jitter = min(10 % of it, 10 s))
  on demand        the secret is rewritten again and the class file touched: seconds until
                   every volume shows it (goal: <= 2 s)
  burst p99        csi-load publishes B new pods at once (another class, provider 50 ms):
                   alone; as every one of the N volumes refreshes (an on-demand wave: the
                   burst starts once the first volume shows the change); and in a storm (the
                   class file touched every 0.5 s, every volume refreshing over and over, far
                   beyond any real interval): first-publish p50/p99 of each (goal: with the
                   refreshes no worse than without)

The coalescing modes are `--rotation-coalesce-window=0` and `=2s`, passed only when the
driver's --help lists the flag; otherwise one mode runs with the driver's defaults.

    python3 Benchmarks/rotation.py [--bin-dir .build/release] [--out-dir .build/bench/rotation]
                                   [--quick] [--volumes N] [--interval 2m] [--burst 250]
                                   [--windows 0,2s] [--check]

--quick: 200 volumes, 10 s interval, burst of 50 (about half a minute per mode; the
integration test runs it). --check: exit 3 unless every volume got every change and no
call failed (timing goals are reported, not enforced: they depend on the machine).
Needs root (tmpfs mounts). Prints a table and writes rotation.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "integration"))

from benchlib import cpu_seconds, stop, unmount_under, wait_socket  # noqa: E402

OBJECTS = ["secret-0", "secret-1", "secret-2"]
CHANGED = "secret-0"
SERVICE_ACCOUNTS = 10
TOKENS_KEY = "csi.storage.k8s.io/serviceAccount.tokens"


def parse_duration(text: str) -> float:
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise SystemExit(f"rotation: bad duration {text!r}")
    return total


def jitter_bound(interval: float) -> float:
    """RotationPlan's bound: at most 10 % of the interval and at most 10 s."""
    return min(interval * 0.1, 10.0)


def spc_yaml(name: str, latency: str) -> str:
    objects = json.dumps([{"objectName": o} for o in OBJECTS])
    return (f"apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\n"
            f"metadata:\n  name: {name}\n  namespace: default\nspec:\n  provider: reference\n"
            f"  parameters:\n    objects: {json.dumps(objects)}\n    fault.latency: {json.dumps(latency)}\n")


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def provider_stats(path: Path) -> dict:
    for _ in range(50):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.02)
    return {}


def mount_calls(path: Path) -> int:
    """Mount calls so far; the provider writes its stats file each second while they change."""
    return int(provider_stats(path).get("mount_calls", 0))


def driver_lists_flag(driver: Path, flag: str) -> bool:
    out = subprocess.run([str(driver), "--help"], capture_output=True, text=True, timeout=30)
    return flag in (out.stdout + out.stderr)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


class Node:
    """One fixture: provider, driver, kubelet root, N volumes published from here."""

    def __init__(self, root: Path, bins: Path, interval: str, driver_extra: list[str], latency: str):
        self.root, self.bins = root, bins
        self.providers, self.store, self.classes, self.kubelet = (root / "providers", root / "store", root / "classes",
                                                                  root / "kubelet")
        for d in (self.providers, self.store, self.classes, self.kubelet / "pods"):
            d.mkdir(parents=True)
        for i, o in enumerate(OBJECTS):
            write_atomically(self.store / o, bytes((i * 7 + j) % 251 for j in range(256)))
        self.class_file = self.classes / "rot.yaml"
        self.class_file.write_text(spc_yaml("rot", latency))
        (self.classes / "burst.yaml").write_text(spc_yaml("burst", "50ms"))
        self.stats = root / "provider-stats.json"
        self.provider = subprocess.Popen(
            [str(bins / "csi-reference-provider"), "--endpoint", f"unix://{self.providers}/reference.sock",
             "--data-dir", str(self.store), "--stats-file", str(self.stats)],
            stdout=subprocess.DEVNULL, stderr=open(root / "provider.log", "wb"))
        wait_socket(self.providers / "reference.sock", self.provider, "provider", prefix="rotation: ", timeout=60)
        self.socket = root / "csi.sock"
        self.driver_log = root / "driver.log"
        self.driver = subprocess.Popen(
            [str(bins / "secrets-store-csi-driver"), "--endpoint", f"unix://{self.socket}", "--nodeid", "rotation-bench",
             "--provider-volume", str(self.providers), "--additional-provider-volume-paths", "",
             "--spc-dir", str(self.classes), "--metrics-addr", "0", "--log-level", "warning",
             "--kubelet-root-dir", str(self.kubelet), "--state-dir", str(root / "state"),
             "--enable-secret-rotation", f"--rotation-poll-interval={interval}", *driver_extra],
            stdout=subprocess.DEVNULL, stderr=open(self.driver_log, "wb"))
        wait_socket(self.socket, self.driver, "driver", prefix="rotation: ", timeout=60)
        from support import channel_for, compile_proto
        self.csi = compile_proto("csi")
        self.channel = channel_for(f"unix://{self.socket}")
        self.node = self.csi.grpc.NodeStub(self.channel)
        self.targets: list[str] = []

    def publish(self, i: int) -> str:
        pb = self.csi.pb2
        uid = f"rot-{i:05d}"
        parent = self.kubelet / "pods" / uid / "volumes" / "kubernetes.io~csi" / "secrets"
        parent.mkdir(parents=True, exist_ok=True)
        target = str(parent / "mount")
        tokens = {"bench": {"token": f"token-{uid}", "expirationTimestamp": "2099-01-01T00:00:00Z"}}
        ctx = {"secretProviderClass": "rot", "csi.storage.k8s.io/pod.name": f"app-{i}",
               "csi.storage.k8s.io/pod.namespace": "default", "csi.storage.k8s.io/pod.uid": uid,
               "csi.storage.k8s.io/serviceAccount.name": f"sa-{i % SERVICE_ACCOUNTS}",
               "csi.storage.k8s.io/ephemeral": "true", TOKENS_KEY: json.dumps(tokens)}
        cap = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(),
                                  access_mode=pb.VolumeCapability.AccessMode(
                                      mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER))
        self.node.NodePublishVolume(pb.NodePublishVolumeRequest(
            volume_id="csi-" + uid.encode().hex().ljust(64, "0"), target_path=target, volume_capability=cap,
            readonly=True, volume_context=ctx), timeout=120)
        return target

    def publish_all(self, n: int) -> float:
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            self.targets = list(pool.map(self.publish, range(n)))
        return time.monotonic() - start

    def unpublish_all(self) -> None:
        pb = self.csi.pb2

        def one(t: str) -> None:
            uid = Path(t).parents[3].name
            self.node.NodeUnpublishVolume(pb.NodeUnpublishVolumeRequest(
                volume_id="csi-" + uid.encode().hex().ljust(64, "0"), target_path=t), timeout=60)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(one, self.targets))

    def wait_all_show(self, value: bytes, since: float, timeout: float) -> dict[str, float]:
        """Reads every volume's changed file until it holds `value`: seconds after `since` per volume."""
        pending = set(self.targets)
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for t in list(pending):
                try:
                    with open(f"{t}/{CHANGED}", "rb") as f:
                        ok = f.read() == value
                except OSError:
                    ok = False
                if ok:
                    seen[t] = time.monotonic() - since
                    pending.discard(t)
            if pending:
                time.sleep(0.02)
        return seen

    def wait_any_shows(self, value: bytes, timeout: float) -> bool:
        """Until one volume (of the first 50) holds `value`: a refresh wave has begun."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t in self.targets[:50]:
                try:
                    with open(f"{t}/{CHANGED}", "rb") as f:
                        if f.read() == value:
                            return True
                except OSError:
                    pass
            time.sleep(0.002)
        return False

    def close(self) -> dict:
        self.channel.close()
        rc = stop(self.driver)
        log = self.driver_log.read_text(errors="replace")
        stop(self.provider)
        unmount_under(self.root)
        return {"driver_exit": rc, "handles_left_open": "handles left open" in log}


def run_mode(label: str, driver_extra: list[str], opts, bins: Path, root: Path) -> dict:
    interval = parse_duration(opts.interval)
    node = Node(root / label, bins, opts.interval, driver_extra, opts.latency)
    r: dict = {"mode": label, "driver_args": driver_extra, "volumes": opts.volumes, "interval_s": interval}
    try:
        r["publish_s"] = round(node.publish_all(opts.volumes), 2)
        print(f"[{label}] {opts.volumes} volumes published in {r['publish_s']} s", flush=True)
        # The change lands at `change_at` after the first mounts, not aligned with their fetches.
        time.sleep(max(0.0, opts.change_at - r["publish_s"]))

        # 1. A changed secret, rotation by the timer only.
        new = b"rotated by the timer " + os.urandom(8).hex().encode()
        calls0, cpu0, t0 = mount_calls(node.stats), cpu_seconds(node.driver.pid), time.monotonic()
        write_atomically(node.store / CHANGED, new)
        seen = node.wait_all_show(new, t0, timeout=interval + jitter_bound(interval) + 30)
        # The whole interval after the change: each volume is due once in it.
        time.sleep(max(0.0, t0 + interval - time.monotonic()))
        calls1, cpu1, t1 = mount_calls(node.stats), cpu_seconds(node.driver.pid), time.monotonic()
        times = list(seen.values())
        r["propagation"] = {"updated": len(seen), "p50_s": percentile(times, 0.5), "max_s": max(times) if times else None,
                            "goal_max_s": interval + jitter_bound(interval)}
        r["calls_per_interval"] = round((calls1 - calls0) * interval / (t1 - t0), 1)
        r["driver_cpu_pct"] = round(100 * (cpu1 - cpu0) / (t1 - t0), 2)
        print(f"[{label}] propagation p50 {r['propagation']['p50_s']} max {r['propagation']['max_s']} s, "
              f"{len(seen)}/{opts.volumes} updated; {r['calls_per_interval']} calls/interval; "
              f"driver CPU {r['driver_cpu_pct']} %", flush=True)

        # 2. On demand: the class file touched right after the change.
        new = b"on demand " + os.urandom(8).hex().encode()
        write_atomically(node.store / CHANGED, new)
        t0 = time.monotonic()
        os.utime(node.class_file)
        seen = node.wait_all_show(new, t0, timeout=60)
        times = list(seen.values())
        r["on_demand"] = {"updated": len(seen), "p50_s": percentile(times, 0.5), "max_s": max(times) if times else None,
                          "goal_max_s": 2.0}
        print(f"[{label}] on demand: {len(seen)}/{opts.volumes} updated, max {r['on_demand']['max_s']} s", flush=True)

        # 3. A burst of new pods: alone; as a refresh of every volume starts (one on-demand
        # wave: the secret changes, the class file is touched, the burst goes once the first
        # volume shows the change); and in a storm (the class file touched every 0.5 s, so
        # every volume refreshes over and over: far beyond any real interval).
        r["burst"] = {}
        for case in ("alone", "wave", "storm"):
            stop_touching = threading.Event()
            toucher = None
            time.sleep(1.2)  # the provider's stats file is written once a second
            calls_before = mount_calls(node.stats)
            if case == "wave":
                new = b"wave " + os.urandom(8).hex().encode()
                write_atomically(node.store / CHANGED, new)
                os.utime(node.class_file)
                if not node.wait_any_shows(new, timeout=30):
                    print(f"[{label}] the on-demand wave did not start", flush=True)
            elif case == "storm":
                def touch() -> None:
                    while not stop_touching.is_set():
                        os.utime(node.class_file)
                        stop_touching.wait(0.5)
                toucher = threading.Thread(target=touch, daemon=True)
                toucher.start()
                time.sleep(1.0)  # the refreshes are under way
            out = root / f"{label}-burst-{case}.json"
            # Beneath the driver's kubelet root: csi-load makes <burst_root>/pods/<uid>/...
            burst_root = node.kubelet / "pods" / f"burst-{case}"
            burst_root.mkdir(parents=True, exist_ok=True)
            cmd = [str(bins / "csi-load"), "--endpoint", f"unix://{node.socket}", "--driver-pid", str(node.driver.pid),
                   "--provider-stats", str(node.stats), "--kubelet-root", str(burst_root),
                   "--data-dir", str(node.store), "--spc", "burst", "--scenario", f"{label}-burst-{case}", "--quiet",
                   "--out", str(out), "--pods", str(opts.burst), "--arrival", "burst", "--duration", "2s" if opts.quick else "5s",
                   "--republish", "off", *sum((["--expect-object", o] for o in OBJECTS), [])]
            started = time.monotonic()
            rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=open(root / f"{label}-csi-load-{case}.log", "wb"),
                                timeout=600).returncode
            took = time.monotonic() - started
            if toucher:
                stop_touching.set()
                toucher.join()
            time.sleep(1.2)
            res = json.loads(out.read_text()) if out.exists() else {}
            m = res.get("metrics", {})
            # Mount calls other than the burst's own, from just before it to just after (the
            # wave's refreshes that overlapped it and those that followed; the storm's).
            r["burst"][case] = {"exit": rc, "p50_ms": m.get("first_publish.p50_ms"), "p99_ms": m.get("first_publish.p99_ms"),
                                "errors": (res.get("errors") or {}).get("total"),
                                "refresh_calls_around": mount_calls(node.stats) - calls_before - opts.burst,
                                "csi_load_s": round(took, 1)}
            print(f"[{label}] burst of {opts.burst} {case}: p99 {r['burst'][case]['p99_ms']} ms, "
                  f"errors {r['burst'][case]['errors']}, other calls {r['burst'][case]['refresh_calls_around']}", flush=True)
        node.unpublish_all()
    finally:
        r.update(node.close())
    return r


ROWS = [
    ("provider calls per interval", "calls_per_interval"),
    ("driver CPU over the interval (% of a core)", "driver_cpu_pct"),
    ("change propagation p50 (s)", "propagation.p50_s"),
    ("change propagation max (s)", "propagation.max_s"),
    ("  goal: max <= interval + jitter (s)", "propagation.goal_max_s"),
    ("volumes updated by the timer", "propagation.updated"),
    ("on demand: every volume updated (s)", "on_demand.max_s"),
    ("on demand: p50 (s)", "on_demand.p50_s"),
    ("volumes updated on demand", "on_demand.updated"),
    ("burst first-publish p50, alone (ms)", "burst.alone.p50_ms"),
    ("burst first-publish p99, alone (ms)", "burst.alone.p99_ms"),
    ("burst p50, as every volume refreshes (ms)", "burst.wave.p50_ms"),
    ("burst p99, as every volume refreshes (ms)", "burst.wave.p99_ms"),
    ("  refresh calls around it", "burst.wave.refresh_calls_around"),
    ("burst p99, refresh storm (ms)", "burst.storm.p99_ms"),
    ("  refresh calls around it", "burst.storm.refresh_calls_around"),
    ("burst errors (all cases)", "burst_errors"),
    ("driver exit status", "driver_exit"),
]


def pick(r: dict, key: str):
    if key == "burst_errors":
        b = r.get("burst", {})
        vals = [(b.get(c) or {}).get("errors") for c in ("alone", "wave", "storm")]
        return None if None in vals else sum(vals)
    for p in key.split("."):
        if not isinstance(r, dict) or p not in r:
            return None
        r = r[p]
    return round(r, 3) if isinstance(r, float) else r


def print_table(results: list[dict]) -> None:
    print(f"\n{'':44}" + "".join(f"{r['mode']:>16}" for r in results))
    for label, key in ROWS:
        print(f"{label:44}" + "".join(f"{str(pick(r, key)) if pick(r, key) is not None else '-':>16}" for r in results))


def verdict(results: list[dict]) -> list[str]:
    problems = []
    for r in results:
        n = r["volumes"]
        if pick(r, "propagation.updated") != n:
            problems.append(f"{r['mode']}: {pick(r, 'propagation.updated')}/{n} volumes got the timer's change")
        if pick(r, "on_demand.updated") != n:
            problems.append(f"{r['mode']}: {pick(r, 'on_demand.updated')}/{n} volumes got the on-demand change")
        if pick(r, "burst_errors") != 0:
            problems.append(f"{r['mode']}: burst errors {pick(r, 'burst_errors')}")
        for case in ("alone", "wave", "storm"):
            if pick(r, f"burst.{case}.exit") not in (0, 3):
                problems.append(f"{r['mode']}: csi-load ({case}) exited {pick(r, f'burst.{case}.exit')}")
        if r.get("driver_exit") != 0 or r.get("handles_left_open"):
            problems.append(f"{r['mode']}: driver exit {r.get('driver_exit')}, handles left open {r.get('handles_left_open')}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", type=Path, default=REPO / ".build" / "release")
    ap.add_argument("--out-dir", type=Path, default=REPO / ".build" / "bench" / "rotation")
    ap.add_argument("--quick", action="store_true", help="200 volumes, 10 s interval, burst of 50")
    ap.add_argument("--volumes", type=int)
    ap.add_argument("--interval", help="--rotation-poll-interval (default 2m; --quick 10s)")
    ap.add_argument("--change-at", type=float, help="seconds after the first mount when the secret changes")
    ap.add_argument("--burst", type=int)
    ap.add_argument("--latency", default="normal:50ms,10ms", help="the provider's latency for the rotated class")
    ap.add_argument("--windows", default="0,2s", help="--rotation-coalesce-window values, when the driver has the flag")
    ap.add_argument("--check", action="store_true", help="exit 3 unless every volume got every change without errors")
    opts = ap.parse_args()
    opts.volumes = opts.volumes or (200 if opts.quick else 1000)
    opts.interval = opts.interval or ("10s" if opts.quick else "2m")
    opts.burst = opts.burst or (50 if opts.quick else 250)
    opts.change_at = opts.change_at if opts.change_at is not None else (3.0 if opts.quick else 30.0)
    if os.geteuid() != 0:
        print("rotation: needs root (tmpfs mounts)", file=sys.stderr)
        return 2
    bins = opts.bin_dir.resolve()
    for b in ("secrets-store-csi-driver", "csi-reference-provider", "csi-load"):
        if not (bins / b).is_file():
            print(f"rotation: {bins / b} is missing", file=sys.stderr)
            return 2
    has_window = driver_lists_flag(bins / "secrets-store-csi-driver", "--rotation-coalesce-window")
    modes = ([(f"coalesce={w}", [f"--rotation-coalesce-window={w}"]) for w in opts.windows.split(",") if w]
             if has_window else [("default", [])])
    if not has_window:
        print("rotation: the driver has no --rotation-coalesce-window; one run with its defaults", flush=True)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rot-bench-", dir="/tmp"))
    results = []
    try:
        for label, extra in modes:
            results.append(run_mode(label, extra, opts, bins, root))
    finally:
        unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
    (opts.out_dir / "rotation.json").write_text(json.dumps(results, indent=2))
    print_table(results)
    problems = verdict(results)
    for p in problems:
        print(f"rotation: {p}")
    return 3 if problems and opts.check else 0


if __name__ == "__main__":
    sys.exit(main())
