"""csi-load, the load harness, on tiny scenarios against the real driver and
reference provider; and report.py on its output.

These tests check what the harness reports (structure, counts, that every
pod was published and verified, that every histogram holds every successful
call and no failed one), never how fast anything was; and that a deliberately
broken driver (broken_driver.py) fails every run.

Environment: LOAD_BIN (default .build/debug/csi-load), DRIVER_BIN,
REFERENCE_PROVIDER_BIN (default: next to the driver). Needs root (tmpfs mounts).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO, START_TIMEOUT, driver_bin, is_socket, require_executable, short_tmpdir, wait_until

KINDS = ("first_publish", "republish", "unpublish", "teardown")
RUN_TIMEOUT = 300


def load_bin() -> Path:
    return Path(os.environ.get("LOAD_BIN") or REPO / ".build" / "debug" / "csi-load").resolve()


def provider_bin() -> Path:
    p = os.environ.get("REFERENCE_PROVIDER_BIN")
    return Path(p).resolve() if p else driver_bin().parent / "csi-reference-provider"


@pytest.fixture(scope="module")
def binaries() -> dict:
    return {
        "load": require_executable(load_bin(), "csi-load", "LOAD_BIN"),
        "driver": require_executable(driver_bin(), "driver binary", "DRIVER_BIN"),
        "provider": require_executable(provider_bin(), "csi-reference-provider", "REFERENCE_PROVIDER_BIN"),
    }


def run_load(binaries: dict, out: Path, *args: str, expect: int = 0) -> tuple[dict, str]:
    cmd = [str(binaries["load"]), *args, "--out", str(out), "--quiet"]
    if "--endpoint" not in args:
        cmd += ["--driver-bin", str(binaries["driver"]), "--provider-bin", str(binaries["provider"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == expect, f"csi-load exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(out.read_text()), proc.stdout


def check_histograms(result: dict) -> None:
    """Every successful call is in its latency histogram and buckets, every failed one in
    the failed-call histogram alone; every call in its time series."""
    series = result["timeseries"]
    n = len(series["t_s"])
    assert n > 0
    for column, values in series.items():
        assert len(values) == n, f"time series column {column} has {len(values)} entries, t_s has {n}"
    for kind in KINDS:
        calls, lat, failed = result["calls"][kind], result["latency"][kind], result["latency_failed"][kind]
        assert lat["count"] == calls["ok"], kind
        assert sum(b[2] for b in lat["buckets"]) == calls["ok"], kind
        assert failed["count"] == sum(calls["errors"].values()), kind
        assert calls["ok"] + sum(calls["errors"].values()) == calls["count"], kind
        if calls["ok"]:
            assert lat["p50_us"] <= lat["p90_us"] <= lat["p99_us"] <= lat["p999_us"] <= lat["max_us"], kind
            assert lat["percentiles"][-1][0] == 100
        assert sum(series[f"calls_{kind}"]) <= calls["count"], kind
        assert result["metrics"][f"{kind}.count"] == calls["count"]


@pytest.fixture(scope="module")
def kubelet_run(binaries, tmp_path_factory) -> tuple[dict, str, Path]:
    """10 pods, republishing every 1-2 s with rotation due after 1 s, one pod
    replaced per second, a secret changed at 1 s, for 8 s."""
    out = tmp_path_factory.mktemp("load") / "tiny.json"
    result, stdout = run_load(
        binaries, out, "--scenario", "tiny", "--pods", "10", "--duration", "8s", "--republish", "1s-2s",
        "--churn", "1", "--enable-secret-rotation", "--rotation-poll-interval", "1s", "--change-secret-at", "1s",
        "--objects", "2", "--object-size", "64", "--target", "first_publish.errors<=0")
    return result, stdout, out


def test_every_pod_is_published_without_errors(kubelet_run):
    result, stdout, _ = kubelet_run
    assert result["schema"] == "csi-load/1" and result["scenario"] == "tiny"
    assert result["aborted"] is None
    initial = result["groups"][0]
    assert initial["count"] == initial["arrived"] == initial["live"] == 10
    calls = result["calls"]
    for kind in KINDS:
        assert calls[kind]["errors"] == {}, kind
    # One first publish per pod (no retries without errors); churn made the extra pods.
    created = result["metrics"]["pods.created"]
    assert calls["first_publish"]["count"] == created
    assert calls["unpublish"]["count"] == created - 10
    assert calls["unpublish"]["count"] >= 1
    assert calls["republish"]["count"] > 0
    # The drain unpublished exactly what was still mounted.
    assert calls["teardown"]["count"] == calls["first_publish"]["ok"] - calls["unpublish"]["ok"]
    assert result["leftover_targets"] == 0
    assert result["passed"] is True
    assert "PASS  first_publish.errors <= 0" in stdout
    # The error targets every run has, besides the one given.
    assert {t["metric"] for t in result["targets"]} == {"first_publish.errors", "errors", "verify_errors"}
    assert result["errors"] == {"total": 0, "rpc": 0, "verify": 0, "by_code": {},
                                "by_kind": {k: {} for k in KINDS}}


def test_every_published_volume_is_verified(kubelet_run):
    result = kubelet_run[0]
    v = result["verification"]
    assert v["content_checked"] and v["objects"] == ["secret-0", "secret-1"]
    ok_publishes = result["calls"]["first_publish"]["ok"] + result["calls"]["republish"]["ok"]
    assert v["every"] == 1 and v["checked"] == v["publishes_ok"] == ok_publishes > 0
    assert v["cpu_per_check_us"] > 0 and result["metrics"]["verify.cpu_per_check_us"] == v["cpu_per_check_us"]
    assert "all good" in kubelet_run[1]


def test_latency_counts_from_the_scheduled_time_and_cpu_per_call_is_reported(kubelet_run):
    result, stdout, _ = kubelet_run
    lag = result["schedule_lag"]
    # Every call sent in the measured part: the drain's too, which are due at its start.
    assert lag["count"] == sum(result["calls"][k]["count"] for k in KINDS)
    cpu = result["cpu"]
    assert cpu["calls_sent"] >= result["calls"]["first_publish"]["count"]
    assert cpu["harness_s"] > 0 and cpu["harness_per_call_us"] > 0
    assert cpu["driver_per_call_us"] is not None
    assert result["metrics"]["harness.cpu_per_call_us"] == cpu["harness_per_call_us"]
    assert "CPU per call: harness" in stdout


def test_histograms_hold_every_call(kubelet_run):
    check_histograms(kubelet_run[0])


def test_provider_and_resources_are_reported(kubelet_run):
    result = kubelet_run[0]
    stats = result["provider_stats"]
    assert stats["mount_errors"] == {}
    # Every first publish fetched; rotation made some republishes fetch too.
    assert stats["mount_calls"] >= result["calls"]["first_publish"]["count"]
    assert stats["objects_served"] == 2 * stats["mount_ok"]
    m = result["metrics"]
    assert m["driver.rss_max_mib"] > 0 and m["driver.hwm_mib"] >= m["driver.rss_max_mib"] * 0.99
    assert any(v is not None for v in result["timeseries"]["driver_cpu_pct"])
    assert result["exit"] == {"driver": "exit 0", "provider": "exit 0"}


def test_secret_change_reaches_every_volume(kubelet_run):
    p = kubelet_run[0]["propagation"]
    assert p["changed_at_s"] is not None
    assert p["complete"], f"volumes still stale at the end: {p}"
    assert p["stale_at_end"] == 0
    assert p["per_volume_s"]["count"] + p["removed_before_seeing"] >= p["volumes_at_change"]


def test_cycles_count_matches_calls(binaries, tmp_path):
    result, stdout = run_load(
        binaries, tmp_path / "cycles.json", "--workload", "cycles", "--concurrency", "2", "--duration", "2s",
        "--warmup", "500ms", "--target", "cycles_per_s>=0", "--verify-every", "2")
    check_histograms(result)
    v = result["verification"]
    assert v["every"] == 2 and v["checked"] == (v["publishes_ok"] + 1) // 2 > 0
    calls = result["calls"]
    assert calls["first_publish"]["errors"] == {} and calls["unpublish"]["errors"] == {}
    assert result["cycles"] == calls["first_publish"]["count"] > 0
    # A cycle that straddles the end of the warm-up has only its unpublish measured.
    assert 0 <= calls["unpublish"]["count"] - calls["first_publish"]["count"] <= 2
    assert result["metrics"]["volumes.peak"] <= 2
    assert result["leftover_targets"] == 0
    assert "cycles (publish + unpublish)" in stdout


def test_tmp_parent_holds_the_run_on_the_named_file_system(binaries, tmp_path):
    # A tmpfs of our own: the run's tree (kubelet root included) goes there and
    # the results name that file system; nothing is left behind.
    parent = Path(short_tmpdir())
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(parent)], check=True)
    try:
        result, stdout = run_load(binaries, tmp_path / "fs.json", "--pods", "2", "--duration", "1s",
                                  "--tmp-parent", str(parent))
        assert result["calls"]["first_publish"]["count"] == 2
        assert result["host"]["kubelet_root_fs"].startswith(f"tmpfs on {parent} ")
        assert f"kubelet root on tmpfs on {parent}" in stdout
        assert list(parent.iterdir()) == [], "csi-load left its temporary tree behind"
    finally:
        subprocess.run(["umount", str(parent)], check=False)
        parent.rmdir()


def test_missed_target_exits_3(binaries, tmp_path):
    result, stdout = run_load(
        binaries, tmp_path / "miss.json", "--pods", "2", "--duration", "1s", "--target", "first_publish.count>=1000",
        expect=3)
    assert result["passed"] is False
    assert result["targets"][0]["pass"] is False and result["targets"][0]["value"] == 2
    assert "FAIL  first_publish.count >= 1000" in stdout


def test_injected_faults_take_an_error_range(binaries, tmp_path):
    """With provider faults the run has no implicit errors<=0: the expected range is given;
    volumes must still verify."""
    result, stdout = run_load(
        binaries, tmp_path / "faults.json", "--pods", "3", "--duration", "1s", "--republish", "off",
        "--provider-error-rate", "1", "--target", "errors>=3")
    assert {t["metric"] for t in result["targets"]} == {"errors", "verify_errors"}
    assert result["passed"] is True
    first = result["calls"]["first_publish"]
    assert first["ok"] == 0 and first["count"] >= 3
    assert result["errors"]["verify"] == 0 and result["errors"]["rpc"] == result["errors"]["total"] >= 3
    assert result["latency"]["first_publish"]["count"] == 0
    check_histograms(result)


def test_against_a_running_driver(binaries, tmp_path):
    """--endpoint mode: the test starts the provider and driver, csi-load only drives them."""
    work = short_tmpdir()
    procs: list[subprocess.Popen] = []
    try:
        providers, store, classes, kubelet = work / "p", work / "s", work / "c", work / "k"
        for d in (providers, store, classes, kubelet):
            d.mkdir()
        (store / "token").write_bytes(b"first")
        objects = json.dumps([{"objectName": "token"}])
        (classes / "ext.yaml").write_text(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\n"
            "metadata: {name: ext, namespace: default}\n"
            f"spec:\n  provider: reference\n  parameters:\n    objects: {json.dumps(objects)}\n")
        stats = work / "stats.json"
        psock, dsock = providers / "reference.sock", work / "csi.sock"
        procs.append(subprocess.Popen(
            [str(binaries["provider"]), "--endpoint", f"unix://{psock}", "--data-dir", str(store),
             "--stats-file", str(stats), "--log-level", "warning"], stdin=subprocess.DEVNULL))
        wait_until(lambda: is_socket(psock), START_TIMEOUT, "provider socket")
        procs.append(subprocess.Popen(
            [str(binaries["driver"]), "--endpoint", f"unix://{dsock}", "--nodeid", "n", "--provider-volume",
             str(providers), "--additional-provider-volume-paths", "", "--spc-dir", str(classes),
             "--enable-secret-rotation", "--rotation-poll-interval", "1s", "--log-level", "warning",
             "--kubelet-root-dir", str(kubelet)],
            stdin=subprocess.DEVNULL))
        wait_until(lambda: is_socket(dsock), START_TIMEOUT, "driver socket")
        result, _ = run_load(
            binaries, tmp_path / "ext.json", "--endpoint", f"unix://{dsock}", "--driver-pid", str(procs[1].pid),
            "--provider-stats", str(stats), "--kubelet-root", str(kubelet), "--spc", "ext", "--data-dir", str(store),
            "--change-object", "token", "--expect-object", "token", "--change-secret-at", "1s", "--pods", "4",
            "--duration", "6s", "--republish", "1s-2s")
        assert result["driver_mode"] == "external"
        assert result["verification"]["objects"] == ["token"] and result["errors"]["total"] == 0
        assert result["verification"]["checked"] >= 4
        assert result["groups"][0]["live"] == 4
        assert result["calls"]["teardown"]["count"] == 4
        for kind in KINDS:
            assert result["calls"][kind]["errors"] == {}, kind
        check_histograms(result)
        assert result["metrics"]["driver.rss_max_mib"] > 0
        assert result["provider_stats"]["mount_calls"] >= 4
        assert result["propagation"]["complete"], result["propagation"]
        assert (store / "token").read_bytes() != b"first"
        # Every pod directory was removed after its unpublish.
        assert list((kubelet / "pods").iterdir()) == []
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
        subprocess.run(f"grep -o ' {work}/[^ ]*' /proc/self/mounts | xargs -r -n1 umount -l", shell=True, check=False)
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def test_report_renders_html_with_svg_and_compares(kubelet_run, tmp_path):
    _, _, results = kubelet_run
    html = tmp_path / "report.html"
    proc = subprocess.run(
        [sys.executable, str(REPO / "Benchmarks" / "report.py"), str(results), "--baseline", str(results), "-o", str(html)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    page = html.read_text()
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") >= 5
    assert "tiny" in page and "baseline" in page
    # Compared with itself, every ratio is 1.
    assert "ratio" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.strip().startswith("first_publish.p99_ms")]
    assert rows and rows[0].split()[-1] == "1"


# --------------------------------------------------------------------------
# A driver that answers OK without doing the work, or fails fast, fails the run.

BROKEN = {
    # mode: (the code its publishes are counted under, OK answers from the driver)
    "empty": ("VERIFY_EMPTY", True),
    "wrong": ("VERIFY_WRONG_CONTENT", True),
    "partial": ("VERIFY_MISSING_OBJECT", True),
    "disk": ("VERIFY_NOT_MOUNTED", True),
    "errors": ("UNAVAILABLE", False),
}


def broken_driver(tmp_path: Path, mode: str) -> Path:
    """An executable that starts broken_driver.py in `mode`, taking the driver's flags."""
    wrapper = tmp_path / f"broken-driver-{mode}"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).parent / 'broken_driver.py'} --mode {mode} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.parametrize("mode", sorted(BROKEN))
def test_a_broken_driver_fails_the_run(binaries, tmp_path, mode):
    code, answers_ok = BROKEN[mode]
    bins = dict(binaries, driver=broken_driver(tmp_path, mode))
    result, stdout = run_load(
        bins, tmp_path / f"{mode}.json", "--scenario", f"broken-{mode}", "--pods", "3", "--duration", "2s",
        "--republish", "off", "--objects", "3", "--object-size", "32", expect=3)
    assert result["passed"] is False
    failing = {t["metric"] for t in result["targets"] if not t["pass"]}
    assert "errors" in failing
    assert ("verify_errors" in failing) == answers_ok
    first = result["calls"]["first_publish"]
    assert first["ok"] == 0 and first["errors"].get(code, 0) == first["count"] >= 3
    assert result["errors"]["by_code"][code] >= 3
    # Failed calls are timed apart: no latency for work that was not done.
    assert result["latency"]["first_publish"]["count"] == 0
    assert result["latency_failed"]["first_publish"]["count"] == first["count"]
    assert result["groups"][0]["first_publish"]["count"] == 0
    check_histograms(result)
    assert "FAIL  errors <= 0" in stdout and code in stdout
    assert any(code in sample for sample in result["error_samples"])
    # report.py shows the errors by code, on the console and in the page.
    html = tmp_path / "report.html"
    proc = subprocess.run(
        [sys.executable, str(REPO / "Benchmarks" / "report.py"), str(tmp_path / f"{mode}.json"), "-o", str(html)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    line = f"errors: {result['errors']['total']} ("
    assert line in proc.stdout and f"{code} {result['errors']['by_code'][code]}" in proc.stdout
    assert line in html.read_text()


def test_an_unpublish_that_leaves_the_target_fails_the_run(binaries, tmp_path):
    bins = dict(binaries, driver=broken_driver(tmp_path, "leftover"))
    result, stdout = run_load(bins, tmp_path / "leftover.json", "--pods", "2", "--duration", "1s", "--republish", "off",
                              expect=3)
    assert result["calls"]["first_publish"]["ok"] == 2 and result["verification"]["checked"] == 2
    assert result["calls"]["teardown"]["errors"] == {"VERIFY_TARGET_LEFT": 2}
    assert result["leftover_targets"] == 2
    assert {t["metric"] for t in result["targets"] if not t["pass"]} == {"errors", "verify_errors"}
