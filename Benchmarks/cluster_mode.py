#!/usr/bin/env python3
"""Standalone vs cluster mode, side by side in one run, on the same node fixture.

One reference provider and one kubelet root; the driver is started twice, once with
`--spc-dir` (classes from files) and once with `--kubeconfig` against the test
Kubernetes API server (Tests/kubeapi/apiserver.py), whose cache also holds --spcs
other SecretProviderClasses across namespaces. For each mode csi-load (--endpoint)
runs the same scenarios, verifying every volume:

  c1        cycles, 1 worker          publish p50/p99
  c8        cycles, 8 workers         publish p50/p99, cycles/s
  burst250  250 pods at once, provider 50 ms   first-publish p99
  live1000  1000 volumes mounted, then idle    driver RSS (cluster: with the class cache)

and, in cluster mode, counts the driver's API requests per publish from the API
server's request log (the driver runs as its own service-account user).

    python3 Benchmarks/cluster_mode.py --bin-dir .build/release --out-dir .build/bench/cluster

Needs root (tmpfs mounts). Prints a table and writes cluster_mode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "integration"))

from benchlib import stop, unmount_under, wait_socket  # noqa: E402
from kubeapi_fixture import start_kube_api  # noqa: E402
from test_cluster_mode import DRIVER_RULES as _E2E_RULES, DRIVER_USER  # noqa: E402

# deploy/'s rules for the driver, without Secret sync (the load uses no secretObjects).
DRIVER_RULES = [r for r in _E2E_RULES if r["resources"] != ["secrets"]]

OBJECTS = ["secret-0", "secret-1", "secret-2"]
ONLY: set[str] = set()

SCENARIOS = {
    "c1": ["--workload", "cycles", "--concurrency", "1", "--duration", "10s", "--spc", "load"],
    "c8": ["--workload", "cycles", "--concurrency", "8", "--duration", "10s", "--spc", "load"],
    "burst250": ["--pods", "250", "--arrival", "burst", "--duration", "5s", "--republish", "off", "--spc", "load-50ms"],
    "live1000": ["--pods", "1000", "--arrival", "rate:200", "--duration", "20s", "--republish", "off", "--spc", "load"],
}


def spc_yaml(name: str, namespace: str, latency: str | None) -> dict:
    params = {"objects": json.dumps([{"objectName": o} for o in OBJECTS])}
    if latency:
        params["fault.latency"] = latency
    return {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"provider": "reference", "parameters": params}}


def run_mode(mode: str, bins: Path, root: Path, api, out_dir: Path, spcs: int) -> dict:
    node = root / mode
    providers, store, classes, kubelet = node / "providers", node / "store", node / "classes", node / "kubelet"
    for d in (providers, store, classes, kubelet / "pods"):
        d.mkdir(parents=True)
    for i, o in enumerate(OBJECTS):
        (store / o).write_bytes(bytes((i * 7 + j) % 251 for j in range(256)))
    provider = subprocess.Popen(
        [str(bins / "csi-reference-provider"), "--endpoint", f"unix://{providers}/reference.sock", "--data-dir", str(store),
         "--stats-file", str(node / "provider-stats.json")],
        stdout=subprocess.DEVNULL, stderr=open(node / "provider.log", "wb"))
    wait_socket(providers / "reference.sock", provider, "provider")
    import yaml
    args = [str(bins / "secrets-store-csi-driver"), "--endpoint", f"unix://{node}/csi.sock", "--nodeid", "bench-node",
            "--provider-volume", str(providers), "--additional-provider-volume-paths", "", "--log-level", "warning",
            "--state-dir", str(node / "state"),
            "--kubelet-root-dir", str(kubelet)]
    if mode == "standalone":
        for name, lat in (("load", None), ("load-50ms", "normal:50ms,10ms")):
            (classes / f"{name}.yaml").write_text(yaml.safe_dump(spc_yaml(name, "default", lat)))
        args += ["--spc-dir", str(classes)]
    else:
        for name, lat in (("load", None), ("load-50ms", "normal:50ms,10ms")):
            api.ok("POST", "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/default/secretproviderclasses", spc_yaml(name, "default", lat))
        token = api.add_token(DRIVER_USER, rules=DRIVER_RULES)
        args += ["--kubeconfig", str(api.kubeconfig_for(token, "driver"))]
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(node / "driver.log", "wb"))
    wait_socket(node / "csi.sock", driver, "driver")
    if mode == "cluster":
        for _ in range(600):
            if "SecretProviderClass cache synced" in (node / "driver.log").read_text() or "cache synced" in (node / "driver.log").read_text():
                break
            time.sleep(0.05)
    results = {}
    try:
        for name, extra in SCENARIOS.items():
            if ONLY and name not in ONLY:
                continue
            out = out_dir / f"{mode}-{name}.json"
            start = api.requests()["next"] if mode == "cluster" else 0
            cmd = [str(bins / "csi-load"), "--endpoint", f"unix://{node}/csi.sock", "--driver-pid", str(driver.pid),
                   "--provider-stats", str(node / "provider-stats.json"), "--kubelet-root", str(kubelet),
                   "--data-dir", str(store), "--scenario", f"{mode}-{name}", "--quiet", "--out", str(out),
                   *sum((["--expect-object", o] for o in OBJECTS), []), *extra]
            rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=open(node / f"csi-load-{name}.log", "wb")).returncode
            r = json.loads(out.read_text()) if out.exists() else {}
            r["_exit"] = rc
            if mode == "cluster":
                time.sleep(1.0)  # let the asynchronous status writes land
                counts: dict = {}
                for q in api.requests(since=start)["requests"]:
                    if q.get("user") == DRIVER_USER and q.get("verb") not in (None, "discovery"):
                        k = f"{q['verb']} {q['resource']}"
                        counts[k] = counts.get(k, 0) + 1
                r["_api_requests"] = counts
            if name == "live1000":
                # Where the driver's memory is, with the volumes still mounted: heap vs mapped files.
                try:
                    rollup = Path(f"/proc/{driver.pid}/smaps_rollup").read_text()
                    r["_smaps_rollup"] = {l.split(":")[0]: l.split(":")[1].strip() for l in rollup.splitlines()[1:]}
                except OSError:
                    pass
            results[name] = r
    finally:
        stop(driver)
        stop(provider)
        unmount_under(node)
    return results


def pick(r: dict, *path, default=None):
    for p in path:
        if not isinstance(r, dict) or p not in r:
            return default
        r = r[p]
    return r


ROWS = [
    ("publish p50 c=1 (ms)", "c1", "first_publish.p50_ms"),
    ("publish p99 c=1 (ms)", "c1", "first_publish.p99_ms"),
    ("driver CPU per call c=1 (us)", "c1", "driver.cpu_per_call_us"),
    ("publish p50 c=8 (ms)", "c8", "first_publish.p50_ms"),
    ("publish p99 c=8 (ms)", "c8", "first_publish.p99_ms"),
    ("cycles/s c=8", "c8", "cycles_per_s"),
    ("driver CPU per call c=8 (us)", "c8", "driver.cpu_per_call_us"),
    ("burst 250, provider 50 ms: p50 (ms)", "burst250", "first_publish.p50_ms"),
    ("burst 250, provider 50 ms: p99 (ms)", "burst250", "first_publish.p99_ms"),
    ("1000 volumes: driver RSS max (MiB)", "live1000", "driver.rss_max_mib"),
    ("1000 volumes: volumes live (peak)", "live1000", "volumes.peak"),
]


def print_table(results: dict) -> None:
    print(f"{'':40} {'standalone':>11} {'cluster':>11} {'ratio':>7}")
    for label, scen, key in ROWS:
        if scen not in results["standalone"]:
            continue
        a = results["standalone"][scen].get("metrics", {}).get(key)
        b = results["cluster"][scen].get("metrics", {}).get(key)
        ratio = f"{b / a:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else "-"
        print(f"{label:40} {a if a is not None else '-':>11} {b if b is not None else '-':>11} {ratio:>7}")
    print()
    for scen in SCENARIOS:
        for mode in ("standalone", "cluster"):
            if scen not in results[mode]:
                continue
            r = results[mode][scen]
            publishes = r.get("metrics", {}).get("first_publish.count") or 0
            line = f"{mode:10} {scen:9} exit {r.get('_exit')} errors {r.get('errors', {}).get('total')} verified {r.get('verification', {}).get('checked')}"
            if mode == "cluster":
                api = r.get("_api_requests", {})
                total = sum(api.values())
                line += f" driver API requests {api} ({total / publishes:.2f} per publish)" if publishes else f" api {api}"
            print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", type=Path, default=REPO / ".build" / "release")
    ap.add_argument("--out-dir", type=Path, default=REPO / ".build" / "bench" / "cluster")
    ap.add_argument("--spcs", type=int, default=500, help="other SecretProviderClasses in the cluster's cache")
    ap.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    ap.add_argument("--table", type=Path, help="only print the table of an earlier run's cluster_mode.json")
    args = ap.parse_args()
    if args.table:
        print_table(json.loads(args.table.read_text()))
        return 0
    ONLY.update(x for x in args.only.split(",") if x)
    if os.geteuid() != 0:
        print("needs root (tmpfs mounts)", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    # HTTP/2, as a real API server offers it: all of the driver's requests on one connection.
    api = start_kube_api(root / "api", "--bookmark-interval", "30", "--http2", preload=("secrets-store",))
    try:
        api.pause_gc(True)  # the load's pods exist only on the node: keep their status objects
        for i in range(args.spcs):
            ns = f"team-{i % 50}"
            if i < 50:
                api.ensure_namespace(ns)
            api.ok("POST", f"/apis/secrets-store.csi.x-k8s.io/v1/namespaces/{ns}/secretproviderclasses",
                   spc_yaml(f"filler-{i}", ns, None))
        api.ensure_namespace("default")
        all_results = {mode: run_mode(mode, args.bin_dir, root, api, args.out_dir, args.spcs)
                       for mode in ("standalone", "cluster")}
    finally:
        api.stop()
        unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
    (args.out_dir / "cluster_mode.json").write_text(json.dumps(all_results, indent=2))

    print_table(all_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
