"""A minimal gRPC provider spoken directly over HTTP/2 with the `h2` package.

grpcio's server API hands a servicer the invocation metadata but not the
request's pseudo-headers, so it cannot tell which `:authority` a client sent.
This server sits below gRPC: it records every request's complete HTTP/2 header
list (pseudo-headers included, exactly as HPACK-decoded) and answers Version
and Mount with valid gRPC responses, so a gRPC client cannot tell it from a
real provider.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from pathlib import Path
from typing import Optional

from support import compile_proto, require_h2


class H2RecordingProvider:
    def __init__(self, socket_path: Path):
        require_h2()
        self.socket_path = Path(socket_path)
        self.proto = compile_proto("provider")
        self.requests: list[dict] = []  # {"headers": [(name, value)], "body": bytes}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: Optional[socket.socket] = None
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> "H2RecordingProvider":
        if self.socket_path.exists():
            os.unlink(self.socket_path)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(str(self.socket_path))
        ls.listen(16)
        ls.setblocking(False)
        self._listener = ls
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    def header_lists(self) -> list[list[tuple[str, str]]]:
        with self._lock:
            return [list(r["headers"]) for r in self.requests]

    # ---- internals

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            r, _, _ = select.select([self._listener], [], [], 0.05)
            if not r:
                continue
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, OSError):
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, sock: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.events

        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        bodies: dict[int, bytearray] = {}
        headers: dict[int, list] = {}
        try:
            sock.sendall(conn.data_to_send())
            while not self._stop.is_set():
                r, _, _ = select.select([sock], [], [], 0.05)
                if not r:
                    continue
                data = sock.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        headers[ev.stream_id] = [(str(k), str(v)) for k, v in ev.headers]
                        bodies[ev.stream_id] = bytearray()
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        self._respond(conn, ev.stream_id, headers.pop(ev.stream_id, []),
                                      bytes(bodies.pop(ev.stream_id, b"")))
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        sock.sendall(conn.data_to_send())
                        return
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
        except Exception as e:  # recorded, never raised in a thread
            with self._lock:
                self.errors.append(repr(e))
        finally:
            sock.close()

    def _respond(self, conn, stream_id: int, hdrs: list, body: bytes) -> None:
        with self._lock:
            self.requests.append({"headers": hdrs, "body": body})
        path = dict(hdrs).get(":path", "")
        pb = self.proto.pb2
        if path.endswith("/Version"):
            payload = pb.VersionResponse(version="v1alpha1", runtime_name="h2-recorder",
                                         runtime_version="1").SerializeToString()
        elif path.endswith("/Mount"):
            resp = pb.MountResponse()
            resp.object_version.add(id="a", version="1")
            payload = resp.SerializeToString()
        else:
            conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc"),
                                          ("grpc-status", "12")], end_stream=True)
            return
        frame = b"\x00" + len(payload).to_bytes(4, "big") + payload
        conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
        conn.send_data(stream_id, frame)
        conn.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)
