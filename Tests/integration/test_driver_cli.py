"""The driver as a process: flags, startup checks on the endpoint, shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from pathlib import Path

import pytest

from support import free_tcp_port, is_socket, make_stale_socket, run_cmd


def test_version_flag_prints_version_and_exits_zero(driver_path):
    r = run_cmd([str(driver_path), "--version"])
    assert r.returncode == 0, r.stderr
    out = (r.stdout + r.stderr).strip()
    assert out, "--version printed nothing"
    assert any(c.isdigit() for c in out), f"--version output has no version number: {out!r}"


def test_version_is_the_stamp_of_the_build(driver_path):
    """The version comes from the build (scripts/stamp-version.sh), not from a constant."""
    stamp = Path(__file__).resolve().parents[2] / ".build" / "version.h"
    if not stamp.exists():
        pytest.skip("no .build/version.h: the driver was built without `make`, so it has no stamp")
    m = re.fullmatch(r'#define SSCD_BUILD_VERSION "([^"]+)"\n?', stamp.read_text())
    assert m, f"unexpected stamp file: {stamp.read_text()!r}"
    r = run_cmd([str(driver_path), "--version"])
    assert r.stdout.strip() == f"secrets-store-csi-driver {m.group(1)}"


def test_help_lists_the_flags_users_pass(driver_path):
    r = run_cmd([str(driver_path), "--help"])
    assert r.returncode == 0, r.stderr
    text = r.stdout + r.stderr
    for flag in ("--endpoint", "--nodeid", "--drivername", "--log-format-json", "--version",
                 "--max-call-recv-msg-size"):
        assert flag in text, f"--help does not mention {flag}:\n{text}"


def test_missing_nodeid_exits_nonzero_naming_the_flag(driver_path, workdir):
    sock = workdir / "csi.sock"
    r = run_cmd([str(driver_path), "--endpoint", f"unix://{sock}"])
    assert r.returncode != 0
    assert "nodeid" in (r.stdout + r.stderr), f"message does not name --nodeid: {r.stderr!r}"
    assert not is_socket(sock), "driver listened although it refused to start"


def test_unknown_flag_exits_nonzero(driver_path, workdir):
    r = run_cmd([str(driver_path), "--nodeid", "n", "--endpoint", f"unix://{workdir}/x.sock",
                 "--no-such-flag-xyz"])
    assert r.returncode != 0


@pytest.mark.parametrize("kind", ["regular-file", "directory"])
def test_refuses_endpoint_path_that_is_not_a_socket(driver_path, workdir, kind):
    path = workdir / "csi.sock"
    if kind == "regular-file":
        path.write_bytes(b"precious data")
    else:
        path.mkdir()
        (path / "inside").write_text("keep me")
    r = run_cmd([str(driver_path), "--nodeid", "n", "--endpoint", f"unix://{path}"])
    assert r.returncode != 0, "driver started on a path that is not a socket"
    assert (r.stdout + r.stderr).strip(), "driver refused without a message"
    # Whatever was there must be left alone.
    if kind == "regular-file":
        assert path.read_bytes() == b"precious data"
    else:
        assert (path / "inside").read_text() == "keep me"


def test_removes_stale_socket_and_serves(start_driver, workdir, csi):
    sock = workdir / "stale.sock"
    make_stale_socket(sock)
    assert is_socket(sock)
    d = start_driver(endpoint=f"unix://{sock}")
    info = csi.grpc.IdentityStub(d.channel()).GetPluginInfo(csi.pb2.GetPluginInfoRequest(),
                                                             timeout=10)
    assert info.name


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_down_cleanly_and_removes_socket(start_driver, csi, sig):
    d = start_driver()
    sock = d.socket_path
    assert is_socket(sock)
    rc = d.stop(sig)
    assert rc == 0, f"exit code {rc} after {sig.name}\n{d.describe()}"
    assert not os.path.lexists(sock), "socket file left behind after shutdown"


def test_sigterm_with_idle_client_connected(start_driver, csi):
    """An open, idle HTTP/2 connection (as kubelet keeps) must not hold up shutdown."""
    d = start_driver()
    stub = csi.grpc.IdentityStub(d.channel())
    stub.Probe(csi.pb2.ProbeRequest(), timeout=10)  # connection established, now idle
    rc = d.stop(signal.SIGTERM)
    assert rc == 0, d.describe()
    assert not os.path.lexists(d.socket_path)


def test_sigterm_with_raw_half_open_connection(start_driver, csi):
    """A client that connected and sent nothing must not hold up shutdown either."""
    d = start_driver()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(d.socket_path))
        rc = d.stop(signal.SIGTERM)
        assert rc == 0, d.describe()
    finally:
        s.close()


def test_tcp_endpoint(start_driver, csi):
    port = free_tcp_port()
    d = start_driver(endpoint=f"tcp://127.0.0.1:{port}")
    stub = csi.grpc.NodeStub(d.channel())
    assert stub.NodeGetInfo(csi.pb2.NodeGetInfoRequest(), timeout=10).node_id == "test-node"
    assert d.stop(signal.SIGTERM) == 0, d.describe()


def test_drivername_flag(start_driver, csi):
    d = start_driver("--drivername", "other.csi.example.com")
    info = csi.grpc.IdentityStub(d.channel()).GetPluginInfo(csi.pb2.GetPluginInfoRequest(),
                                                             timeout=10)
    assert info.name == "other.csi.example.com"


def test_log_format_json_writes_json_lines(start_driver, csi):
    d = start_driver("--log-format-json")
    csi.grpc.IdentityStub(d.channel()).GetPluginInfo(csi.pb2.GetPluginInfoRequest(), timeout=10)
    assert d.stop(signal.SIGTERM) == 0, d.describe()
    lines = [l for l in d.stderr().splitlines() if l.strip()]
    assert lines, "driver logged nothing at all (expected at least a startup line)"
    for line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"stderr line is not JSON with --log-format-json: {line!r}")
        assert isinstance(obj, dict), f"log line is not a JSON object: {line!r}"



@pytest.mark.parametrize("value", ["2ms", "-1us", "soon"])
def test_loop_spin_out_of_range_is_refused(driver_path, workdir, value):
    sock = workdir / "csi.sock"
    r = run_cmd([str(driver_path), "--nodeid", "n", "--endpoint", f"unix://{sock}", f"--loop-spin={value}"])
    assert r.returncode != 0
    assert "--loop-spin" in (r.stdout + r.stderr)
    assert not is_socket(sock)


@pytest.mark.parametrize("args,flag", [
    (["--provider-max-concurrency=-1"], "--provider-max-concurrency"),
    (["--provider-qps=-5"], "--provider-qps"),
    (["--provider-burst=0"], "--provider-burst"),
    (["--rotation-coalesce-window=soon"], "--rotation-coalesce-window"),
    # A window as long as the shortest interval could serve a volume the same answer twice.
    (["--rotation-coalesce-window=2m"], "--rotation-coalesce-window"),
    (["--rotation-poll-interval=5s", "--rotation-coalesce-window=5s"], "--rotation-coalesce-window"),
])
def test_bad_provider_limits_and_coalesce_window_are_refused(driver_path, workdir, args, flag):
    sock = workdir / "csi.sock"
    r = run_cmd([str(driver_path), "--nodeid", "n", "--endpoint", f"unix://{sock}", *args])
    assert r.returncode != 0
    assert flag in (r.stdout + r.stderr)
    assert not is_socket(sock)


def test_provider_limits_and_coalescing_are_in_help_and_start(driver_path, start_driver, csi):
    text = run_cmd([str(driver_path), "--help"]).stdout
    for flag in ("--provider-max-concurrency", "--provider-qps", "--provider-burst", "--rotation-coalesce-window"):
        assert flag in text, f"--help does not mention {flag}"
    d = start_driver("--provider-max-concurrency=0", "--provider-qps=0", "--provider-burst=1",
                     "--rotation-coalesce-window=5s", "--enable-secret-rotation")
    assert d.proc.poll() is None


@pytest.mark.parametrize("value", ["0", "1ms"])
def test_loop_spin_off_and_at_most_serve_calls(start_driver, csi, value):
    d = start_driver(f"--loop-spin={value}")
    stub = csi.grpc.NodeStub(d.channel())
    for _ in range(20):
        assert stub.NodeGetInfo(csi.pb2.NodeGetInfoRequest(), timeout=10).node_id == "test-node"
    assert d.stop(signal.SIGTERM) == 0, d.describe()


def test_driver_links_neither_full_foundation_nor_icu_nor_libcurl_nor_libcrypto(driver_path):
    """Full Foundation and its ICU data are ~7 MiB resident; the driver needs only
    FoundationEssentials (YAML goes through libyaml). libcurl and the ~25 libraries it
    needs are loaded on the first HTTP request (CCurl), not at start. libcrypto (~3 MiB
    once initialized) is not needed at all: the state record's SHA-256 is the C shim's."""
    r = run_cmd(["ldd", str(driver_path)])
    assert r.returncode == 0, r.stderr
    libs = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    assert "libFoundation.so" not in libs, r.stdout
    assert "lib_FoundationICU.so" not in libs, r.stdout
    assert "libFoundationInternationalization.so" not in libs, r.stdout
    assert not any(lib.startswith("libcurl") for lib in libs), r.stdout
    assert not any(lib.startswith(("libcrypto", "libssl")) for lib in libs), r.stdout


def upstream_daemonset_args(endpoint: str) -> list[str]:
    """The `secrets-store` container's args in upstream v1.6's deploy/secrets-store-csi-driver.yaml
    ($(CSI_ENDPOINT) and $(KUBE_NODE_NAME) substituted), plus what its Helm chart adds."""
    return [
        f"--endpoint={endpoint}",
        "--nodeid=test-node",
        "--provider-volume=/var/run/secrets-store-csi-providers",
        "--additional-provider-volume-paths=/etc/kubernetes/secrets-store-csi-providers",
        "--metrics-addr=:8095",
        "--enable-secret-rotation=false",
        "--rotation-poll-interval=2m",
        "--provider-health-check=false",
        "--provider-health-check-interval=2m",
        # The chart: logVerbosity, logFormatJSON, maxCallRecvMsgSize.
        "-v=5",
        "--log-format-json=true",
        "--max-call-recv-msg-size=4194304",
    ]


def ignored_flag_warnings(stderr: str) -> list[str]:
    """The `flag` field of every ignored-flag warning in JSON log lines."""
    flags = []
    for line in stderr.splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry.get("level") == "warning" and "flag" in entry:
            flags.append(entry["flag"])
    return flags


@pytest.mark.parametrize("extra", [
    [],
    # Older manifests, given twice, Go's single-dash spelling, values in the next argument
    # (empty ones too): still one warning each.
    ["--filtered-watch-secret=true", "-metrics-addr=:9095", "--enable-pprof=false", "--kubeconfig", "",
     "-pprof-port", "6065", "--additional-provider-volume-paths", ""],
], ids=["v1.6", "older"])
def test_starts_with_upstream_daemonset_args_and_warns_once_per_ignored_flag(start_driver, workdir, csi, extra):
    endpoint = f"unix://{workdir}/upstream.sock"
    d = start_driver(*upstream_daemonset_args(endpoint), *extra, endpoint=endpoint, nodeid=None)
    info = csi.grpc.IdentityStub(d.channel()).GetPluginInfo(csi.pb2.GetPluginInfoRequest(), timeout=10)
    assert info.name == "secrets-store.csi.k8s.io"
    assert d.stop(signal.SIGTERM) == 0, d.describe()
    warned = ignored_flag_warnings(d.stderr())
    # --enable-pprof=false asks for nothing, so nothing to warn about; --metrics-addr is served.
    expected = ["--filtered-watch-secret", "--pprof-port"] if extra else []
    assert sorted(warned) == sorted(expected), d.describe()


def test_help_names_the_accepted_upstream_flags(driver_path):
    r = run_cmd([str(driver_path), "--help"])
    assert r.returncode == 0, r.stderr
    text = " ".join((r.stdout + r.stderr).split())
    for flag in ("--metrics-addr", "--filtered-watch-secret", "--enable-pprof", "--pprof-port",
                 "--provider-health-check-interval", "--rotation-poll-interval"):
        assert flag in text, f"--help does not mention {flag}"


@pytest.mark.parametrize("value", ["true", "false", "True", "0", "1"])
def test_go_style_bool_values_are_accepted(start_driver, csi, value):
    d = start_driver(f"--enable-secret-rotation={value}", f"--provider-health-check={value}",
                     "--provider-health-check-interval=1m")
    assert csi.grpc.NodeStub(d.channel()).NodeGetInfo(csi.pb2.NodeGetInfoRequest(), timeout=10).node_id
    assert d.stop(signal.SIGTERM) == 0, d.describe()
