"""A provider plugin written with Python grpcio: implements
v1alpha1.CSIDriverProvider on a unix socket, records every request it gets,
and has knobs to misbehave.

Knobs (attributes, may be changed between calls):
  delay          seconds to wait before answering (interrupted by stop())
  error_code     a grpc.StatusCode to fail every call with (None: answer)
  error_message  details for error_code
  files          list of (path, mode, contents bytes) for Mount
  object_versions list of (id, version) for Mount
  mount_error    a string for MountResponse.error.code ("" for none)
  pad_bytes      when > 0, Mount adds one file of that many bytes (oversized responses)
  version        (version, runtime_name, runtime_version) for Version
  echo           where Mount puts an echo of its request (see echo_text): "status" (the
                 gRPC error message), "code" (MountResponse.error.code), "path" (an
                 invalid file path), "mode" (the path of a file with a bad mode),
                 "contents" (file contents: a successful mount); None for no echo
  echo_version   when true, Version fails with the echo of the last Mount request
"""

from __future__ import annotations

import base64
import json
import os
import threading
from concurrent import futures
from pathlib import Path
from typing import Optional

import grpc

from support import compile_proto


class FakeProvider:
    def __init__(self, socket_path: Path):
        self.socket_path = Path(socket_path)
        self.proto = compile_proto("provider")
        self.delay = 0.0
        self.error_code: Optional[grpc.StatusCode] = None
        self.error_message = "fake provider error"
        self.files: list[tuple[str, int, bytes]] = [("secret.txt", 0, b"value")]
        self.object_versions: list[tuple[str, str]] = [("secret.txt", "v1")]
        self.mount_error = ""
        self.pad_bytes = 0
        self.version = ("v1alpha1", "fake-provider", "0.0.1")
        self.echo: Optional[str] = None
        self.echo_version = False
        self.requests: list[tuple[str, object]] = []  # (method, request message)
        self.metadata: list[tuple[str, dict]] = []  # (method, invocation metadata)
        self.time_left: list[tuple[str, float]] = []  # (method, seconds to the call's deadline on arrival)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: Optional[grpc.Server] = None

    # ---- lifecycle

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> "FakeProvider":
        assert self._server is None, "already running"
        self._stopping.clear()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=[
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1),
            ("grpc.so_reuseport", 0),
        ])
        self.proto.grpc.add_CSIDriverProviderServicer_to_server(_Servicer(self), server)
        if self.socket_path.exists():
            os.unlink(self.socket_path)
        port = server.add_insecure_port(f"unix:{self.socket_path}")
        if port == 0:
            raise RuntimeError(f"could not listen on {self.socket_path}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop at once: in-flight calls are cancelled, the socket file removed."""
        self._stopping.set()
        if self._server is not None:
            self._server.stop(grace=None).wait(timeout=10)
            self._server = None
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    @property
    def running(self) -> bool:
        return self._server is not None

    # ---- inspection

    def calls(self, method: str) -> list:
        with self._lock:
            return [r for m, r in self.requests if m == method]

    def deadlines(self, method: str) -> list[float]:
        """Seconds each call had left when it arrived (huge when it had no deadline)."""
        with self._lock:
            return [t for m, t in self.time_left if m == method]

    def _record(self, method: str, request, context) -> None:
        with self._lock:
            self.requests.append((method, request))
            self.metadata.append((method, dict(context.invocation_metadata())))
            self.time_left.append((method, context.time_remaining()))

    def _misbehave(self, context) -> None:
        if self.delay > 0:
            self._stopping.wait(self.delay)
        if self.error_code is not None:
            context.abort(self.error_code, self.error_message)


class _Servicer:
    """Implements the generated servicer interface by duck typing."""

    def __init__(self, fake: FakeProvider):
        self.fake = fake

    def Version(self, request, context):
        f = self.fake
        f._record("Version", request, context)
        if f.echo_version:
            mounts = f.calls("Mount")
            context.abort(grpc.StatusCode.INTERNAL, echo_text(mounts[-1]) if mounts else "no Mount yet")
        f._misbehave(context)
        v, name, rv = f.version
        return f.proto.pb2.VersionResponse(version=v, runtime_name=name, runtime_version=rv)

    def Mount(self, request, context):
        f = self.fake
        f._record("Mount", request, context)
        f._misbehave(context)
        pb = f.proto.pb2
        resp = pb.MountResponse()
        for oid, ver in f.object_versions:
            resp.object_version.add(id=oid, version=ver)
        files = list(f.files)
        if f.echo:
            echo = echo_text(request)
            if f.echo == "status":
                context.abort(grpc.StatusCode.PERMISSION_DENIED, echo)
            elif f.echo == "code":
                resp.error.code = echo
            elif f.echo == "path":
                files.append(("../" + echo[:200], 0, b"x"))
            elif f.echo == "mode":
                files.append((echo[:200], -1, b"x"))
            elif f.echo == "contents":
                files.append(("echo.txt", 0, echo.encode()))
        for path, mode, contents in files:
            resp.files.add(path=path, mode=mode, contents=contents)
        if f.pad_bytes > 0:
            resp.files.add(path="padding.bin", mode=0, contents=b"\x5a" * f.pad_bytes)
        if f.mount_error:
            resp.error.code = f.mount_error
        return resp


TOKENS_KEY = "csi.storage.k8s.io/serviceAccount.tokens"


def echo_text(request) -> str:
    """What a careless provider puts into an error: the request's attributes and
    secrets JSON, each value in it (each service-account token too) as is,
    JSON-quoted, base64 (aligned and not), hex and cut short, with control
    characters around, and long enough that it must be cut."""
    values: list[str] = []
    for blob in (request.attributes, request.secrets):
        try:
            obj = json.loads(blob)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        for key, value in obj.items():
            values.append(value)
            if key == TOKENS_KEY:
                try:
                    values += [t["token"] for t in json.loads(value).values()]
                except (ValueError, TypeError, KeyError, AttributeError):
                    pass
    parts = [f"attributes={request.attributes}", f"secrets={request.secrets}"]
    for v in values:
        raw = v.encode()
        parts += [v, json.dumps(v), json.dumps(json.dumps(v)), base64.b64encode(raw).decode(),
                  base64.b64encode(b"x" + raw).decode(), raw.hex(), v[:20] + "..."]
    return "denied:\n\x1b[31m " + " | ".join(parts) + " \u202e\r\n" + "." * 700
