"""The chaos run (Benchmarks/chaos.py --quick) against the debug driver and reference
provider: publishes and unpublishes while the driver and the provider are SIGKILLed and
restarted, answers come near and past kubelet's deadline, the provider throttles and
sends hostile responses, and a reader polls every published volume as a pod would.
Every count the run reports must be 0: no empty, partial or unexpected volume seen, no
file outside a target, no target or mount left behind, no failure that an injected
fault does not explain.

Environment: DRIVER_BIN, REFERENCE_PROVIDER_BIN (default: next to the driver). Needs
root (tmpfs mounts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO, driver_bin, require_executable, short_tmpdir

CHAOS = REPO / "Benchmarks" / "chaos.py"
# A NUL byte in a provider's file name ("evil\0/../../escape"): the driver must refuse the
# whole answer, not read the name up to the NUL (the chaos run found that it did).
NUL_CLASSES = ["hostile-nul", "sometimes-nul"]


def provider_bin() -> Path:
    p = os.environ.get("REFERENCE_PROVIDER_BIN")
    return Path(p).resolve() if p else driver_bin().parent / "csi-reference-provider"


def run_chaos(*args: str) -> tuple[int, dict, str]:
    driver = require_executable(driver_bin(), "driver binary", "DRIVER_BIN")
    provider = require_executable(provider_bin(), "csi-reference-provider", "REFERENCE_PROVIDER_BIN")
    out = short_tmpdir("chaos-it-") / "chaos.json"
    try:
        proc = subprocess.run(
            [sys.executable, str(CHAOS), "--quick", "--driver-bin", str(driver), "--provider-bin", str(provider),
             "--out", str(out), *args], capture_output=True, text=True, timeout=240)
        result = json.loads(out.read_text()) if out.exists() else {}
    finally:
        if out.exists():
            out.unlink()
        out.parent.rmdir()
    return proc.returncode, result, proc.stdout + proc.stderr


def test_quick_chaos_run_counts_nothing_wrong():
    rc, result, output = run_chaos()
    assert result, f"no results written\n{output}"
    counts = result["counts"]
    assert counts == {k: 0 for k in counts}, output
    assert rc == 0, output
    activity = result["activity"]
    # The run really did what it claims: kills, restarts, mounts, reads, rotations, injected failures.
    assert activity["driver_restarts"] >= 2 and activity["provider_restarts"] >= 2, output
    assert activity["volumes_mounted"] > 0 and activity["reader_polls"] > 0 and activity["rotations"] > 0, output
    assert activity["publish_calls"] >= 150 and activity["unpublish_calls"] >= 150, output
    explained = result["failures_explained_by"]
    # Injected faults were really met (one run's share of each is random: ask for a spread).
    hostile = [k for k in explained if k.startswith("hostile:")]
    assert explained.get("driver-killed", 0) > 0 and len(hostile) >= 5, f"{explained}\n{output}"


def test_a_nul_byte_in_a_provider_file_name_is_refused():
    rc, result, output = run_chaos("--only", ",".join(NUL_CLASSES), "--calls", "6", "--workers", "2",
                                   "--driver-kills", "0", "--provider-kills", "0")
    assert result, f"no results written\n{output}"
    counts = result["counts"]
    assert counts["hostile_accepted"] == 0 and counts["wrong_volumes"] == 0, output
    assert counts == {k: 0 for k in counts}, output
    assert result["failures_explained_by"].get("hostile:nul", 0) > 0, output
