"""csi-reference-provider, the provider plugin used by the demo, these tests
and the load harness, driven by grpcio (an independent gRPC stack).

Environment: REFERENCE_PROVIDER_BIN (default .build/debug/csi-reference-provider).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

import grpc
import pytest

from support import (CHANNEL_OPTIONS, REPO, RPC_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, channel_for,
                     is_socket, require_executable, run_cmd, wait_until)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.reference-provider-test-token.c2lnbmF0dXJl"
TOKENS_KEY = "csi.storage.k8s.io/serviceAccount.tokens"


def reference_provider_bin() -> Path:
    p = os.environ.get("REFERENCE_PROVIDER_BIN") or str(REPO / ".build" / "debug" / "csi-reference-provider")
    return Path(p).resolve()


def version_of(contents: bytes) -> str:
    return hashlib.sha256(contents).hexdigest()[:16]


class ReferenceProvider:
    """One running csi-reference-provider on <workdir>/<name>.sock, with a data
    directory and a stats file in workdir. stderr goes to a file."""

    def __init__(self, binary: Path, workdir: Path, pb, args: list[str], name: str):
        self.pb = pb
        self.socket_path = workdir / f"{name}.sock"
        self.data_dir = workdir / f"{name}-data"
        self.data_dir.mkdir(exist_ok=True)
        self.stats_path = workdir / f"{name}-stats.json"
        self.stderr_path = workdir / f"{name}.stderr"
        self.args = [str(binary), "--endpoint", f"unix://{self.socket_path}", "--data-dir", str(self.data_dir),
                     "--stats-file", str(self.stats_path), *args]
        self._stderr_f = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._stderr_f)
        self._channel: Optional[grpc.Channel] = None

    def stderr(self) -> str:
        self._stderr_f.flush()
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def describe(self) -> str:
        return f"{' '.join(self.args)}\n--- provider stderr ---\n{self.stderr()[-4000:]}"

    @property
    def stub(self):
        if self._channel is None:
            self._channel = channel_for(f"unix://{self.socket_path}")
        return self.pb.grpc.CSIDriverProviderStub(self._channel)

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def wait_ready(self) -> "ReferenceProvider":
        deadline = time.monotonic() + START_TIMEOUT
        last: Optional[BaseException] = None
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"provider exited with {self.proc.returncode}\n{self.describe()}")
            if is_socket(self.socket_path):
                try:
                    self.stub.Version(self.pb.pb2.VersionRequest(version="v1alpha1"), timeout=1.0)
                    return self
                except grpc.RpcError as e:
                    last = e
                    self.close_channel()  # skip grpcio's reconnect backoff
            if time.monotonic() >= deadline:
                raise AssertionError(f"provider not ready after {START_TIMEOUT}s ({last})\n{self.describe()}")
            time.sleep(0.05)

    def mount_request(self, objects=None, **params):
        """A MountRequest shaped like the driver's: class parameters, the pod's
        volume context and a service-account token. `params` may use dotted keys
        through **{"fault.latency": ...}."""
        attrs = {
            "secretProviderClass": "my-spc",
            "csi.storage.k8s.io/pod.name": "app-0",
            "csi.storage.k8s.io/pod.namespace": "default",
            TOKENS_KEY: json.dumps({"api": {"token": TOKEN, "expirationTimestamp": "2030-01-01T00:00:00Z"}}),
        }
        if objects is not None:
            attrs["objects"] = objects if isinstance(objects, str) else json.dumps(objects)
        attrs.update(params)
        return self.pb.pb2.MountRequest(attributes=json.dumps(attrs), secrets="null",
                                        target_path="/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/v/mount",
                                        permission="420")

    def mount(self, objects=None, timeout: float = RPC_TIMEOUT, **params):
        return self.stub.Mount(self.mount_request(objects, **params), timeout=timeout)

    def stats(self) -> dict:
        return json.loads(self.stats_path.read_text())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.close_channel()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"provider did not exit within {STOP_TIMEOUT}s of signal {sig}\n{self.describe()}")

    def kill(self) -> None:
        self.close_channel()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
        self._stderr_f.close()


@pytest.fixture(scope="session")
def ref_bin() -> Path:
    return require_executable(reference_provider_bin(), "csi-reference-provider", "REFERENCE_PROVIDER_BIN")


@pytest.fixture
def start_ref(ref_bin, workdir, provider_proto):
    """Factory: start_ref(*flags, name="reference") -> a ready ReferenceProvider, killed at teardown."""
    procs: list[ReferenceProvider] = []

    def start(*args: str, name: str = "reference") -> ReferenceProvider:
        p = ReferenceProvider(ref_bin, workdir, provider_proto, list(args), name)
        procs.append(p)
        return p.wait_ready()

    try:
        yield start
    finally:
        for p in procs:
            p.kill()


@pytest.fixture
def ref(start_ref) -> ReferenceProvider:
    return start_ref()


def files_by_path(resp) -> dict:
    return {f.path: f for f in resp.files}


def versions(resp) -> dict:
    return {v.id: v.version for v in resp.object_version}


def assert_failed(resp, code: str) -> None:
    assert resp.error.code == code, f"expected error code {code}, got {resp}"
    assert len(resp.files) == 0 and len(resp.object_version) == 0, f"a failed mount carried data: {resp}"


# ---- Version


def test_version_answers_v1alpha1_and_runtime(start_ref):
    p = start_ref("--runtime-name", "my-runtime")
    resp = p.stub.Version(p.pb.pb2.VersionRequest(version="v1alpha1"), timeout=RPC_TIMEOUT)
    assert resp.version == "v1alpha1"
    assert resp.runtime_name == "my-runtime"
    assert resp.runtime_version != ""


def test_authority_localhost(ref, provider_proto):
    options = [*CHANNEL_OPTIONS, ("grpc.default_authority", "localhost")]
    with grpc.insecure_channel(f"unix:{ref.socket_path}", options=options) as ch:
        stub = provider_proto.grpc.CSIDriverProviderStub(ch)
        assert stub.Version(provider_proto.pb2.VersionRequest(version="v1alpha1"), timeout=RPC_TIMEOUT).version == "v1alpha1"
        resp = stub.Mount(ref.mount_request([{"objectName": "a", "value": "x"}]), timeout=RPC_TIMEOUT)
        assert versions(resp) == {"a": version_of(b"x")}


# ---- Mount


def test_mount_inline_and_file_objects(ref):
    (ref.data_dir / "db-password").write_bytes(b"hunter2\n")
    (ref.data_dir / "certs").mkdir()
    (ref.data_dir / "certs" / "tls.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    resp = ref.mount([
        {"objectName": "db-password", "path": "db/password", "mode": "0400"},
        {"objectName": "certs/tls.crt", "mode": 0o644},
        {"objectName": "api-key", "value": "inline-ü", "mode": 256},
        {"objectName": "plain", "value": ""},
    ])
    assert resp.error.code == ""
    files = files_by_path(resp)
    assert set(files) == {"db/password", "certs/tls.crt", "api-key", "plain"}
    assert files["db/password"].contents == b"hunter2\n"
    assert files["db/password"].mode == 0o400
    assert files["certs/tls.crt"].contents == b"-----BEGIN CERTIFICATE-----\n"
    assert files["certs/tls.crt"].mode == 0o644
    assert files["api-key"].contents == "inline-ü".encode()
    assert files["api-key"].mode == 0o400
    assert files["plain"].contents == b""
    assert files["plain"].mode == 0, "no mode means the driver's permission (0)"
    assert versions(resp) == {
        "db-password": version_of(b"hunter2\n"),
        "certs/tls.crt": version_of(b"-----BEGIN CERTIFICATE-----\n"),
        "api-key": version_of("inline-ü".encode()),
        "plain": version_of(b""),
    }


def test_changed_file_gives_new_version(ref):
    secret = ref.data_dir / "db-password"
    secret.write_bytes(b"v1")
    first = ref.mount([{"objectName": "db-password"}])
    assert versions(first) == {"db-password": version_of(b"v1")}
    secret.write_bytes(b"v2")
    second = ref.mount([{"objectName": "db-password"}])
    assert versions(second) == {"db-password": version_of(b"v2")}
    assert files_by_path(second)["db-password"].contents == b"v2"


def test_kubernetes_volume_symlinks_inside_data_dir_are_followed(ref):
    # A Secret/ConfigMap volume: name -> ..data/name, ..data -> ..2024_01_01
    real = ref.data_dir / "..2024_01_01"
    real.mkdir()
    (real / "token").write_bytes(b"from-configmap")
    (ref.data_dir / "..data").symlink_to("..2024_01_01")
    (ref.data_dir / "token").symlink_to("..data/token")
    resp = ref.mount([{"objectName": "token"}])
    assert files_by_path(resp)["token"].contents == b"from-configmap"


def test_symlink_escaping_data_dir_is_refused(ref, workdir):
    outside = workdir / "outside-secret"
    outside.write_bytes(b"not yours")
    (ref.data_dir / "escape").symlink_to(outside)
    resp = ref.mount([{"objectName": "escape"}])
    assert_failed(resp, "InvalidParameters")


def test_relative_symlink_climbing_out_of_data_dir_is_refused(ref, workdir):
    (workdir / "outside-secret").write_bytes(b"not yours")
    (ref.data_dir / "sub").mkdir()
    (ref.data_dir / "sub" / "up").symlink_to("../../outside-secret")
    resp = ref.mount([{"objectName": "sub/up"}])
    assert_failed(resp, "InvalidParameters")


def test_missing_object_is_object_not_found(ref):
    (ref.data_dir / "present").write_bytes(b"x")
    resp = ref.mount([{"objectName": "present"}, {"objectName": "absent"}])
    assert_failed(resp, "ObjectNotFound")


@pytest.mark.parametrize("objects", [
    "not json",
    "{\"objectName\": \"a\"}",
    [{"path": "no-name", "value": "x"}],
    [{"objectName": "../etc/passwd"}],
    [{"objectName": "/etc/passwd"}],
    [{"objectName": "a//b", "value": "x"}],
    [{"objectName": "a", "path": "../up", "value": "x"}],
    [{"objectName": "a", "path": "/abs", "value": "x"}],
    [{"objectName": "a", "path": "..data", "value": "x"}],
    [{"objectName": "a", "mode": "0999", "value": "x"}],
    [{"objectName": "a", "mode": 0o1000, "value": "x"}],
    [{"objectName": "a", "value": "x"}, {"objectName": "a", "value": "y"}],
    [{"objectName": "a", "value": "x"}, {"objectName": "b", "path": "a", "value": "y"}],
], ids=lambda o: json.dumps(o)[:40])
def test_bad_objects_are_invalid_parameters(ref, objects):
    assert_failed(ref.mount(objects), "InvalidParameters")


def test_missing_objects_parameter_is_invalid_parameters(ref):
    assert_failed(ref.mount(None), "InvalidParameters")


def test_attributes_that_are_not_a_json_object_of_strings(ref):
    objects = json.dumps(json.dumps([{"objectName": "a", "value": "x"}]))
    for attributes in ["", "not json", "[1,2]", json.dumps({"objects": []}),
                       '{"objects": ' + objects + ',}',  # trailing comma
                       '{"objects": ' + objects + '} x',  # trailing garbage
                       '{"objects": ' + objects + ', "k": "\\ud800"}',  # lone surrogate
                       '{"objects": ' + objects + ', "k": "\\q"}',  # unknown escape
                       '{"objects": ' + objects + ', "k": "tab\there"}',  # raw control character
                       '{"objects": ' + objects + ', "k": null}',
                       '{"objects": ' + objects]:
        resp = ref.stub.Mount(ref.pb.pb2.MountRequest(attributes=attributes, permission="420"), timeout=RPC_TIMEOUT)
        assert_failed(resp, "InvalidParameters")


def test_attributes_json_escapes_are_decoded(ref):
    # Escaped keys and values, surrogate pairs and whitespace, as any JSON encoder may write them.
    objects = json.dumps([{"objectName": "a", "value": "x\u00fc\U0001f511\"q\\/"}])
    attributes = ' { "obj\\u0065cts" : ' + json.dumps(objects, ensure_ascii=True) + ' ,\n\t"csi.storage.k8s.io/pod.name":"p\\ud83d\\udd11" } '
    resp = ref.stub.Mount(ref.pb.pb2.MountRequest(attributes=attributes, permission="420"), timeout=RPC_TIMEOUT)
    assert resp.error.code == ""
    assert files_by_path(resp)["a"].contents == "x\u00fc\U0001f511\"q\\/".encode()


@pytest.mark.parametrize("key,value", [
    ("fault.latency", "soon"),
    ("fault.errorRate", "2"),
    ("fault.errorKind", "explode"),
    ("fault.hostile", "nice"),
    ("fault.throttleEvery", "often"),
])
def test_bad_fault_parameter_is_invalid_parameters(ref, key, value):
    assert_failed(ref.mount([{"objectName": "a", "value": "x"}], **{key: value}), "InvalidParameters")


# ---- hostile responses


OBJECTS = [{"objectName": "a", "value": "alpha"}, {"objectName": "b", "path": "dir/b", "value": "beta"}]


def _hostile_shape(mode: str, resp) -> None:
    paths = [f.path for f in resp.files]
    assert resp.error.code == ""
    if mode == "dotdot":
        assert "../escape" in paths
    elif mode == "absolute":
        assert "/etc/evil" in paths
    elif mode == "reserved":
        assert "..data" in paths
    elif mode == "oversized":
        assert max(len(f.contents) for f in resp.files) > 4 << 20
    elif mode == "empty-versions":
        assert len(resp.files) > 0 and len(resp.object_version) == 0
    elif mode == "bad-mode":
        assert 0o170000 in [f.mode for f in resp.files]
    elif mode == "duplicate":
        assert len(paths) != len(set(paths))
    elif mode == "nul":
        # On the wire, not just in the provider's own message: a real NUL byte in the name.
        assert "evil\x00/../../escape" in paths
    elif mode == "many":
        assert len(paths) >= 100_000 and len(set(paths)) == len(paths)
    elif mode == "tmpfs-full":
        assert max(len(f.contents) for f in resp.files) >= 32 << 20
    elif mode == "symlink":
        assert 0o120777 in [f.mode for f in resp.files]
    elif mode == "through-link":
        assert "link" in paths and "link/inner" in paths
    elif mode == "huge-mode":
        assert 0x7FFFFFFF in [f.mode for f in resp.files]
    else:
        raise AssertionError(mode)


HOSTILE = ["dotdot", "absolute", "oversized", "reserved", "empty-versions", "bad-mode", "duplicate", "nul", "many",
           "tmpfs-full", "symlink", "through-link", "huge-mode"]


@pytest.mark.parametrize("mode", HOSTILE)
def test_hostile_mode_per_request(ref, mode):
    _hostile_shape(mode, ref.mount(OBJECTS, **{"fault.hostile": mode}))
    # The same provider still answers a normal class normally.
    normal = ref.mount(OBJECTS)
    assert sorted(f.path for f in normal.files) == ["a", "dir/b"]
    assert versions(normal) == {"a": version_of(b"alpha"), "b": version_of(b"beta")}


def test_hostile_rate_answers_some_calls_normally(ref):
    params = {"fault.hostile": "dotdot"}
    assert all("../escape" not in [f.path for f in ref.mount(OBJECTS, **params, **{"fault.hostileRate": "0"}).files]
               for _ in range(5))
    assert all("../escape" in [f.path for f in ref.mount(OBJECTS, **params, **{"fault.hostileRate": "1"}).files]
               for _ in range(5))
    assert_failed(ref.mount(OBJECTS, **params, **{"fault.hostileRate": "2"}), "InvalidParameters")


def test_hostile_flag_and_per_request_opt_out(start_ref):
    p = start_ref("--hostile", "absolute")
    _hostile_shape("absolute", p.mount(OBJECTS))
    normal = p.mount(OBJECTS, **{"fault.hostile": "none"})
    assert sorted(f.path for f in normal.files) == ["a", "dir/b"]


# ---- injected errors, throttling, latency


@pytest.mark.parametrize("kind,status", [
    ("response", None),
    ("unavailable", grpc.StatusCode.UNAVAILABLE),
    ("internal", grpc.StatusCode.INTERNAL),
    ("resource-exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED),
])
def test_error_rate_one_per_request(ref, kind, status):
    params = {"fault.errorRate": "1.0", "fault.errorKind": kind}
    for _ in range(3):
        if status is None:
            assert_failed(ref.mount(OBJECTS, **params), "InjectedError")
        else:
            with pytest.raises(grpc.RpcError) as e:
                ref.mount(OBJECTS, **params)
            assert e.value.code() == status
    assert ref.mount(OBJECTS).error.code == ""


@pytest.mark.parametrize("kind,status", [
    ("response", None),
    ("unavailable", grpc.StatusCode.UNAVAILABLE),
    ("internal", grpc.StatusCode.INTERNAL),
])
def test_error_rate_flag(start_ref, kind, status):
    p = start_ref("--error-rate", "1", "--error-kind", kind)
    if status is None:
        assert_failed(p.mount(OBJECTS), "InjectedError")
    else:
        with pytest.raises(grpc.RpcError) as e:
            p.mount(OBJECTS)
        assert e.value.code() == status
    # Version stays healthy, and a class can opt out.
    assert p.stub.Version(p.pb.pb2.VersionRequest(version="v1alpha1"), timeout=RPC_TIMEOUT).version == "v1alpha1"
    assert p.mount(OBJECTS, **{"fault.errorRate": "0"}).error.code == ""


def test_throttle_code_names_what_a_throttled_call_answers(ref):
    always = {"fault.throttleEvery": "1s", "fault.throttleFor": "1s"}
    assert_failed(ref.mount(OBJECTS, **always, **{"fault.throttleCode": "ThrottlingException"}), "ThrottlingException")
    for status in ("RESOURCE_EXHAUSTED", "UNAVAILABLE"):
        with pytest.raises(grpc.RpcError) as e:
            ref.mount(OBJECTS, **always, **{"fault.throttleCode": status})
        assert e.value.code().name == status
    assert_failed(ref.mount(OBJECTS, **always, **{"fault.throttleCode": "two words"}), "InvalidParameters")


def test_throttle_window(start_ref):
    # A window as long as its period: always throttled.
    p = start_ref("--throttle-every", "1s", "--throttle-for", "1s")
    assert_failed(p.mount(OBJECTS), "Throttled")
    assert p.mount(OBJECTS, **{"fault.throttleFor": "0"}).error.code == ""
    assert_failed(p.mount(OBJECTS, **{"fault.throttleEvery": "2m", "fault.throttleFor": "2m"}), "Throttled")


def test_latency_calls_overlap(ref):
    """50 calls with 100 ms of latency each, all started at once: all succeed,
    and the provider held them at the same time (a blocked loop would hold one)."""
    futures = [ref.stub.Mount.future(ref.mount_request(OBJECTS, **{"fault.latency": "100ms"}), timeout=30)
               for _ in range(50)]
    results = [f.result() for f in futures]
    assert all(r.error.code == "" and len(r.files) == 2 for r in results)
    assert ref.stop() == 0
    stats = ref.stats()
    assert stats["mount_ok"] == 50
    assert stats["in_flight_max"] > 1, stats


@pytest.mark.parametrize("spec", ["normal:20ms,5ms", "longtail:2ms,30ms"])
def test_latency_distributions(start_ref, spec):
    p = start_ref("--latency", spec)
    futures = [p.stub.Mount.future(p.mount_request(OBJECTS), timeout=30) for _ in range(20)]
    assert all(f.result().error.code == "" for f in futures)


# ---- stats, logging, lifecycle


def test_stats_file_counts_calls(ref):
    stub, pb2 = ref.stub, ref.pb.pb2
    for _ in range(2):
        stub.Version(pb2.VersionRequest(version="v1alpha1"), timeout=RPC_TIMEOUT)
    for _ in range(3):
        assert ref.mount(OBJECTS).error.code == ""
    assert_failed(ref.mount("nope"), "InvalidParameters")
    ref.mount(OBJECTS, **{"fault.hostile": "dotdot"})
    with pytest.raises(grpc.RpcError):
        ref.mount(OBJECTS, **{"fault.errorRate": "1", "fault.errorKind": "unavailable"})

    def caught_up() -> bool:
        try:
            return ref.stats()["mount_calls"] == 6
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    # Written about once a second while running.
    wait_until(caught_up, 10, "the stats file to show 6 mounts")
    assert ref.stop() == 0
    stats = ref.stats()
    assert stats["version_calls"] >= 2  # plus the readiness probe
    assert stats["mount_calls"] == 6
    assert stats["mount_ok"] == 4
    assert stats["mount_errors"] == {"InvalidParameters": 1, "UNAVAILABLE": 1}
    assert stats["hostile_responses"] == {"dotdot": 1}
    # Every call whose attributes could be read, by the pod's namespace/service account.
    assert stats["mount_calls_by_identity"] == {"default/": 6}
    assert stats["objects_served"] == 8
    assert stats["in_flight"] == 0
    assert stats["in_flight_max"] >= 1
    assert not list(ref.stats_path.parent.glob(ref.stats_path.name + ".tmp*")), "temporary stats file left behind"


def test_debug_log_has_one_line_per_call_and_no_secrets(start_ref):
    p = start_ref("--log-level", "trace")
    (p.data_dir / "db-password").write_bytes(b"file-secret-contents")
    p.mount([{"objectName": "db-password"}, {"objectName": "k", "value": "inline-secret-value"}])
    assert_failed(p.mount("[{\"objectName\": \"bad-secret-in-json\"", ), "InvalidParameters")
    assert p.stop() == 0
    err = p.stderr()
    for secret in [TOKEN, "file-secret-contents", "inline-secret-value", "bad-secret-in-json"]:
        assert secret not in err, f"{secret!r} appeared in the log"
    mount_lines = [l for l in err.splitlines() if "] Mount " in l]
    assert len(mount_lines) == 2, err
    assert "objects=2" in mount_lines[0] and "outcome=ok" in mount_lines[0]
    assert "outcome=InvalidParameters" in mount_lines[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly_and_removes_socket(ref, sig):
    assert ref.mount(OBJECTS).error.code == ""  # leaves an idle client connection open
    assert ref.stop(sig) == 0, ref.describe()
    assert not ref.socket_path.exists()
    assert "left open" not in ref.stderr(), ref.describe()


def test_sigterm_waits_for_calls_in_flight(ref):
    future = ref.stub.Mount.future(ref.mount_request(OBJECTS, **{"fault.latency": "2s"}), timeout=30)
    # The stats file (rewritten each second) shows when the call is being held.
    wait_until(lambda: _in_flight(ref) > 0, 10, "the call to reach the provider")
    ref.proc.send_signal(signal.SIGTERM)
    assert future.result().error.code == ""
    assert ref.proc.wait(timeout=STOP_TIMEOUT) == 0
    assert not ref.socket_path.exists()


def _in_flight(p: ReferenceProvider) -> int:
    try:
        return p.stats()["in_flight"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


@pytest.mark.parametrize("flags,named", [
    (["--latency", "soon"], "--latency"),
    (["--error-rate", "1.5"], "--error-rate"),
    (["--error-kind", "boom"], "--error-kind"),
    (["--hostile", "friendly"], "--hostile"),
    (["--hostile-rate", "-1"], "--hostile-rate"),
    (["--throttle-every", "1s", "--throttle-for", "2s"], "throttle"),
    (["--endpoint", "http://x"], "--endpoint"),
    (["--log-level", "loud"], "--log-level"),
    (["--data-dir", "/nonexistent/reference-provider-data"], "--data-dir"),
])
def test_bad_flags_exit_nonzero_naming_the_flag(ref_bin, flags, named):
    r = run_cmd([str(ref_bin), *flags])
    assert r.returncode != 0
    assert named in r.stderr, r.stderr


def test_help_lists_flags(ref_bin):
    r = run_cmd([str(ref_bin), "--help"])
    assert r.returncode == 0
    for flag in ["--endpoint", "--data-dir", "--runtime-name", "--max-recv-bytes", "--latency", "--error-rate",
                 "--error-kind", "--throttle-every", "--throttle-for", "--hostile", "--hostile-rate", "--stats-file",
                 "--log-level"]:
        assert flag in r.stdout, flag


def test_deadline_or_cancel_ends_the_injected_wait(ref):
    with pytest.raises(grpc.RpcError) as e:
        ref.mount(OBJECTS, timeout=0.3, **{"fault.latency": "30s"})
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    future = ref.stub.Mount.future(ref.mount_request(OBJECTS, **{"fault.latency": "30s"}), timeout=60)
    wait_until(lambda: _in_flight(ref) > 0, 10, "the call to reach the provider")
    future.cancel()
    assert ref.mount(OBJECTS).error.code == ""
    # Shutdown waits for calls in flight: it ends only because both waits were called off.
    assert ref.stop() == 0
    assert "left open" not in ref.stderr(), ref.describe()
    stats = ref.stats()
    assert stats["mount_errors"] == {"DEADLINE_EXCEEDED": 1, "CANCELLED": 1}, stats
    assert stats["in_flight"] == 0


def test_max_recv_bytes(start_ref):
    p = start_ref("--max-recv-bytes", "65536")
    with pytest.raises(grpc.RpcError) as e:
        p.mount([{"objectName": "big", "value": "x" * 70000}])
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert p.mount([{"objectName": "small", "value": "x" * 1000}]).error.code == ""
