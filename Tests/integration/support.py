"""Shared helpers for the integration tests: proto compilation, process
management for the driver and the csi-provider-call tool, bounded waiting.

Everything here is bounded in time: no helper waits forever and none sleeps
for a fixed long time; polling loops use short intervals against a deadline.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import grpc

REPO = Path(__file__).resolve().parents[2]

# Generous bounds: CI machines can be slow, and debug Swift builds start slowly.
START_TIMEOUT = float(os.environ.get("IT_START_TIMEOUT", "30"))
STOP_TIMEOUT = float(os.environ.get("IT_STOP_TIMEOUT", "15"))
RPC_TIMEOUT = float(os.environ.get("IT_RPC_TIMEOUT", "10"))

# Channel options for every grpcio client: never go through an HTTP proxy
# taken from the environment, and lift grpcio's own size limits so that the
# limits under test are the driver's, not the client's.
CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]


def protos_dir() -> Path:
    """The directory holding csi.proto and provider.proto (PROTOS_DIR overrides)."""
    return Path(os.environ.get("PROTOS_DIR", str(REPO / "Protos"))).resolve()


def driver_bin() -> Path:
    p = os.environ.get("DRIVER_BIN") or str(REPO / ".build" / "debug" / "secrets-store-csi-driver")
    return Path(p).resolve()


def provider_call_bin() -> Path:
    p = os.environ.get("PROVIDER_CALL_BIN")
    if p:
        return Path(p).resolve()
    return driver_bin().parent / "csi-provider-call"


def require_h2():
    """Import the `h2` package (raw HTTP/2 peers), failing clearly without it."""
    try:
        import h2.config  # noqa: F401
        import h2.connection  # noqa: F401
        import h2.events  # noqa: F401
        return h2
    except ImportError:
        import pytest

        pytest.fail("the Python package h2 is missing from the test virtualenv "
                    "(it belongs in the Makefile's PY_PACKAGES; make deps installs it)",
                    pytrace=False)


def require_executable(path: Path, what: str, env: str) -> Path:
    """Fail (never skip) with a clear message when a binary under test is missing."""
    import pytest

    if not path.exists():
        pytest.fail(
            f"{what} not found at {path}: build it first (make build) or point {env} at it",
            pytrace=False,
        )
    if not os.access(path, os.X_OK):
        pytest.fail(f"{what} at {path} is not executable", pytrace=False)
    return path


# --------------------------------------------------------------------------
# Proto compilation


class ProtoModules:
    """Generated *_pb2 / *_pb2_grpc modules for one .proto file."""

    def __init__(self, pb2, pb2_grpc):
        self.pb2 = pb2
        self.grpc = pb2_grpc


_compiled: dict[str, ProtoModules] = {}
_compile_lock = threading.Lock()
_out_dir: Optional[Path] = None


def compile_proto(name: str) -> ProtoModules:
    """Compile Protos/<name>.proto with grpc_tools.protoc (once per process) and
    import the generated modules from a temporary directory."""
    global _out_dir
    with _compile_lock:
        if name in _compiled:
            return _compiled[name]
        src_dir = protos_dir()
        src = src_dir / f"{name}.proto"
        if not src.exists():
            raise FileNotFoundError(f"{src} does not exist (PROTOS_DIR={src_dir})")
        from grpc_tools import protoc

        if _out_dir is None:
            _out_dir = Path(tempfile.mkdtemp(prefix="it-protos-"))
            sys.path.insert(0, str(_out_dir))
        includes = [f"-I{src_dir}"]
        # Fallback for google/protobuf/*.proto should Protos/ not carry them.
        try:
            import importlib.resources as ir

            wkt = ir.files("grpc_tools") / "_proto"
            if Path(str(wkt)).is_dir():
                includes.append(f"-I{wkt}")
        except Exception:  # pragma: no cover - best effort
            pass
        args = ["grpc_tools.protoc", *includes, f"--python_out={_out_dir}",
                f"--grpc_python_out={_out_dir}", str(src)]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"protoc failed ({rc}) for {src}: {' '.join(args)}")
        importlib.invalidate_caches()
        pb2 = importlib.import_module(f"{name}_pb2")
        pb2_grpc = importlib.import_module(f"{name}_pb2_grpc")
        mods = ProtoModules(pb2, pb2_grpc)
        _compiled[name] = mods
        return mods


def cleanup_compiled() -> None:
    global _out_dir
    if _out_dir is not None:
        shutil.rmtree(_out_dir, ignore_errors=True)


# --------------------------------------------------------------------------
# Small utilities


def short_tmpdir(prefix: str = "it-") -> Path:
    """A short temporary directory: unix socket paths are limited to 107 bytes,
    and pytest's tmp_path can be longer than that."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


MOUNTS_NEED_ROOT = "NOT RUN: mounts tmpfs, which needs root (run `make test` as root)"

Env = TypeVar("Env")


def skip_unless_root() -> None:
    """Skips the test unless it runs as root, as tmpfs mounts need."""
    if os.geteuid() != 0:
        import pytest

        pytest.skip(MOUNTS_NEED_ROOT)


def mounting_env(make: Callable[[], Env], close: Callable[[Env], None]) -> Iterator[Env]:
    """The body of a fixture whose environment mounts tmpfs (`yield from mounting_env(...)`):
    skips unless root, yields what `make` returns and closes it after the test, however
    the test ended."""
    skip_unless_root()
    env = make()
    try:
        yield env
    finally:
        close(env)


def is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_stale_socket(path: Path) -> None:
    """Leave a unix socket file behind with nobody listening on it, as a
    crashed driver would."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays; nothing listens


def channel_for(endpoint: str) -> grpc.Channel:
    """A grpcio channel for a driver endpoint given in the driver's own syntax."""
    if endpoint.startswith("unix://"):
        target = "unix:" + endpoint[len("unix://"):]
    elif endpoint.startswith("tcp://"):
        target = endpoint[len("tcp://"):]
    else:
        target = endpoint
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def run_cmd(args: list[str], timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run a short-lived command, bounded in time."""
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


# --------------------------------------------------------------------------
# The driver process


def driver_extra_args() -> list[str]:
    """Flags every driver the tests start gets first (a test's own flags come after and win):
    CSI_DRIVER_EXTRA_ARGS="--event-loops=2" runs a suite against a driver with two loops."""
    return shlex.split(os.environ.get("CSI_DRIVER_EXTRA_ARGS", ""))


class DriverProcess:
    """One running driver. stderr goes to a file (never a pipe that could fill
    up and block the driver)."""

    def __init__(self, binary: Path, workdir: Path, endpoint: str, args: list[str],
                 prefix: Sequence[str] = (), connect_endpoint: Optional[str] = None):
        """`prefix` runs the driver under another command (e.g. chroot ROOT); then
        `connect_endpoint` is where this side reaches the socket it serves as `endpoint`."""
        self.binary = binary
        self.workdir = workdir
        self.endpoint = connect_endpoint or endpoint
        self.args = [*prefix, str(binary), "--endpoint", endpoint, *driver_extra_args(), *args]
        self.stderr_path = workdir / f"driver-{id(self)}.stderr"
        self.stdout_path = workdir / f"driver-{id(self)}.stdout"
        self._stderr_f = open(self.stderr_path, "wb")
        self._stdout_f = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=self._stdout_f, stderr=self._stderr_f)
        self._channel: Optional[grpc.Channel] = None

    @property
    def socket_path(self) -> Optional[Path]:
        if self.endpoint.startswith("unix://"):
            return Path(self.endpoint[len("unix://"):])
        return None

    def stderr(self) -> str:
        self._stderr_f.flush()
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def stdout(self) -> str:
        self._stdout_f.flush()
        return self.stdout_path.read_bytes().decode("utf-8", "replace")

    def describe(self) -> str:
        return f"{' '.join(self.args)}\n--- driver stderr ---\n{self.stderr()[-4000:]}"

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = channel_for(self.endpoint)
        return self._channel

    def wait_ready(self, csi, timeout: float = START_TIMEOUT) -> "DriverProcess":
        """Poll until the socket file exists (unix endpoints) and Probe succeeds."""
        deadline = time.monotonic() + timeout
        last_err: Optional[BaseException] = None
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"driver exited with {self.proc.returncode} before becoming ready\n{self.describe()}")
            sock = self.socket_path
            if sock is None or is_socket(sock):
                try:
                    stub = csi.grpc.IdentityStub(self.channel())
                    stub.Probe(csi.pb2.ProbeRequest(), timeout=1.0)
                    return self
                except grpc.RpcError as e:
                    last_err = e
                    # A fresh channel next time: grpcio would otherwise sit out
                    # its reconnect backoff after a refused connection.
                    self.close_channel()
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"driver not ready after {timeout}s (last error: {last_err})\n{self.describe()}")
            time.sleep(0.05)

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send sig and wait (bounded) for the exit code."""
        self.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"driver did not exit within {timeout}s of signal {sig}\n{self.describe()}")

    def kill(self) -> None:
        self.close_channel()
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        for f in (self._stderr_f, self._stdout_f):
            try:
                f.close()
            except Exception:
                pass


def debug_log_flags(help_text: str) -> list[str]:
    """The flags that turn on the most verbose logging the driver offers, as
    far as its --help tells. Empty when it has none."""
    if "--log-level" in help_text:
        return ["--log-level", "trace" if "trace" in help_text else "debug"]
    if "--verbosity" in help_text:
        return ["--verbosity", "5"]
    if "-v=" in help_text or "-v " in help_text or "-v," in help_text or "\n  -v" in help_text:
        return ["-v=5"]
    return []


# --------------------------------------------------------------------------
# The csi-provider-call tool


class ProviderCallProcess:
    """A running csi-provider-call: one JSON command per stdin line, one JSON
    result per stdout line. stdout is read by a thread so reads can be bounded."""

    def __init__(self, binary: Path, workdir: Path, endpoint: str, args: Iterable[str] = ()):
        self.args = [str(binary), "--endpoint", endpoint, *args]
        self.stderr_path = workdir / f"provider-call-{id(self)}.stderr"
        self._stderr_f = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr_f, bufsize=0)
        self._lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def stderr(self) -> str:
        self._stderr_f.flush()
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def call(self, command: dict, timeout: float = RPC_TIMEOUT) -> dict:
        """Send one command and return the parsed result line."""
        assert self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"csi-provider-call exited ({self.proc.returncode})\n{self.stderr()[-4000:]}")
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no result from csi-provider-call within {timeout}s for {command.get('method')}\n"
                f"{self.stderr()[-4000:]}")
        if line is None:
            self.proc.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(
                f"csi-provider-call closed stdout (exit {self.proc.returncode})\n{self.stderr()[-4000:]}")
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"csi-provider-call wrote a line that is not JSON: {line[:500]!r}")
        assert isinstance(result, dict) and "ok" in result, f"unexpected result shape: {result!r}"
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # EOF: the tool should exit by itself
                self.proc.wait(timeout=5)
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        self._reader.join(timeout=5)  # it sees EOF once the process is gone
        for f in (self.proc.stdout, self.proc.stdin, self._stderr_f):
            try:
                if f is not None:
                    f.close()
            except Exception:
                pass


def field(obj: dict, name: str, default=None):
    """Read a response field given in snake_case, accepting the proto3 JSON
    lowerCamelCase spelling too."""
    if name in obj:
        return obj[name]
    parts = name.split("_")
    camel = parts[0] + "".join(p.title() for p in parts[1:])
    return obj.get(camel, default)


# --------------------------------------------------------------------------
# CSI requests as kubelet builds them


POD_UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
VOLUME_ID = "csi-" + "ab" * 32  # kubelet: csi-<sha256 hex>


def target_path(kubelet_root: Path, pod_uid: str = POD_UID, volume: str = "secrets",
                *, make_parent: bool = True) -> str:
    """The one way tests make a target path: kubelet's layout under the driver's
    --kubelet-root-dir (start_driver passes workdir), i.e.
    <kubelet_root>/pods/<pod_uid>/volumes/kubernetes.io~csi/<volume>/mount.
    kubelet creates the parent and the driver the target, so by default the
    parent is created here too."""
    parent = Path(kubelet_root) / "pods" / pod_uid / "volumes" / "kubernetes.io~csi" / volume
    if make_parent:
        parent.mkdir(parents=True, exist_ok=True)
    return str(parent / "mount")


def target_path_for(root: Path, volume: str = "secrets-store-inline") -> str:
    """kubelet's target for the fixed POD_UID, without creating anything."""
    return target_path(root, POD_UID, volume, make_parent=False)


def valid_publish_request(csi, root: Path, *, secrets: Optional[dict] = None,
                          extra_context: Optional[dict] = None):
    """A NodePublishVolumeRequest shaped exactly like kubelet's for an inline
    ephemeral secrets-store volume."""
    pb = csi.pb2
    ctx = {
        "secretProviderClass": "my-spc",
        "csi.storage.k8s.io/pod.name": "app-0",
        "csi.storage.k8s.io/pod.namespace": "default",
        "csi.storage.k8s.io/pod.uid": POD_UID,
        "csi.storage.k8s.io/serviceAccount.name": "default",
        "csi.storage.k8s.io/ephemeral": "true",
    }
    ctx.update(extra_context or {})
    cap = pb.VolumeCapability(
        mount=pb.VolumeCapability.MountVolume(),
        access_mode=pb.VolumeCapability.AccessMode(
            mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER),
    )
    return pb.NodePublishVolumeRequest(
        volume_id=VOLUME_ID,
        target_path=target_path_for(root),
        volume_capability=cap,
        readonly=True,
        volume_context=ctx,
        secrets=secrets or {},
    )
