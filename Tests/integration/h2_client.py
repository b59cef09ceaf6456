"""A raw HTTP/2 gRPC client built on the `h2` package, for what grpcio's
client cannot show: whether the *server* acts on the grpc-timeout header
(grpcio enforces deadlines on its own side, so with it a client-side timeout
and a server-side one look the same)."""

from __future__ import annotations

import select
import socket
import time
from typing import Optional

from support import require_h2


def grpc_frame(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class RawResult:
    def __init__(self):
        self.headers: list[tuple[str, str]] = []
        self.trailers: list[tuple[str, str]] = []
        self.data = bytearray()
        self.reset_code: Optional[int] = None
        self.ended = False
        self.connection_closed = False

    def status(self) -> Optional[str]:
        """grpc-status from the trailers (or a trailers-only response)."""
        for k, v in self.trailers + self.headers:
            if k == "grpc-status":
                return v
        return None


def raw_unary(socket_path: str, method: str, body: Optional[bytes], *,
              extra_headers: list[tuple[str, str]] = (), end_stream: bool = True,
              wait: float = 10.0) -> RawResult:
    """Send one gRPC request on a fresh connection and collect what comes back
    until the stream ends, is reset, or `wait` seconds pass.

    body None sends HEADERS only; end_stream False leaves the request open
    (a client still "uploading")."""
    h2 = require_h2()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(wait)
    res = RawResult()
    try:
        sock.connect(socket_path)
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":path", method),
                   (":authority", "localhost"), ("content-type", "application/grpc"),
                   ("te", "trailers"), *extra_headers]
        conn.send_headers(sid, headers, end_stream=(body is None and end_stream))
        if body is not None:
            conn.send_data(sid, grpc_frame(body), end_stream=end_stream)
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + wait
        while not (res.ended or res.reset_code is not None):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([sock], [], [], min(left, 0.1))
            if not r:
                continue
            data = sock.recv(65536)
            if not data:
                res.connection_closed = True
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    res.headers = [(str(k), str(v)) for k, v in ev.headers]
                elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id == sid:
                    res.trailers = [(str(k), str(v)) for k, v in ev.headers]
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    res.data.extend(ev.data)
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    res.ended = True
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    res.reset_code = int(ev.error_code)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    res.connection_closed = True
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            if res.connection_closed:
                break
    finally:
        sock.close()
    return res
