#!/usr/bin/env python3
"""HTTPS test server for the CurlHTTP tests, on 127.0.0.1.

Generates a CA, a server certificate (127.0.0.1, localhost) and a client certificate
with openssl into --dir, then listens on four ports:
  tls      TLS, ALPN h2 and http/1.1 (HTTP/2 for clients that offer it)
  tls_h1   TLS, ALPN http/1.1 only
  plain    plain HTTP/1.1
  silent   accepts TCP connections and never says a word (a TLS handshake that never ends)
and prints them as one JSON line on stdout. Exits when stdin closes.

Endpoints (same on HTTP/1.1 and HTTP/2):
  /hello                  "hello\\n"
  /echo                   JSON: method, path, headers, body (latin-1)
  /bytes?n=N&chunked=1    N pattern bytes, with Content-Length unless chunked=1
  /gzip?n=N               N lines "<8-digit index> compressible line\\n", gzip-encoded if accepted
  /lines?n=N&chunk=K&keep=1&size=S
                          N lines "<8-digit index> <S x>\\n", cut into K-byte pieces
                          regardless of line ends; keep=1 then holds the response open
  /endless?size=S         lines "<index> <S x>\\n" for ever, as fast as flow control allows
  /slow?ms=M              waits M ms, then "slow\\n"
  /never                  never answers
  /drip                   "first\\n", then nothing, holding the response open
  /whoami                 the client certificate's CN, or "anonymous"
  /status?code=N          status N
  /stats                  JSON counters: connections per protocol, requests (all but
                          /stats itself: a test that polls /stats to learn that the
                          server has its request must not count its own polls), aborted
                          (responses the client went away from), endless_lines_sent
"""
import argparse
import asyncio
import functools
import gzip
import json
import os
import ssl
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions

STATS = {"h1": 0, "h2": 0, "requests": 0, "aborted": 0, "endless_lines_sent": 0}
FOREVER = object()  # a body piece: hold the response open until the client goes away


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=curlhttp-test-ca", "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, cn, ext in [
        ("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "test-client", "extendedKeyUsage=clientAuth\n"),
    ]:
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\n" + ext)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@functools.lru_cache(maxsize=4)
def pattern(n):
    return bytes((i ^ (i >> 8) ^ (i >> 16)) & 0xFF for i in range(n))


class Request:
    def __init__(self, method, target, headers, body, proto, peer_cn):
        self.method = method
        parts = urlsplit(target)
        self.path = parts.path
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.headers = headers  # [(lowercase name, value)]
        self.body = body
        self.proto = proto
        self.peer_cn = peer_cn

    def arg(self, name, default):
        return int(self.query.get(name, default))


async def chunks_of(data, size):
    for i in range(0, len(data), size):
        yield data[i:i + size]
        if (i // size) % 16 == 15:
            await asyncio.sleep(0)


async def handle(req):
    """Returns (status, headers, async iterable of body pieces)."""
    if req.path != "/stats":
        STATS["requests"] += 1
    text = [("content-type", "text/plain"), ("x-proto", req.proto)]

    async def body(*pieces):
        for p in pieces:
            yield p

    if req.path == "/hello":
        return 200, text, body(b"hello\n")
    if req.path == "/echo":
        out = json.dumps({"method": req.method, "path": req.path, "headers": dict(req.headers),
                          "body": req.body.decode("latin-1")}).encode()
        return 200, [("content-type", "application/json"), ("content-length", str(len(out)))], body(out)
    if req.path == "/bytes":
        data = pattern(req.arg("n", 0))
        if req.arg("chunked", 0):
            return 200, text, chunks_of(data, 16384)
        return 200, text + [("content-length", str(len(data)))], chunks_of(data, 65536)
    if req.path == "/gzip":
        data = b"".join(b"%08d compressible line\n" % i for i in range(req.arg("n", 1000)))
        if "gzip" in dict(req.headers).get("accept-encoding", ""):
            packed = gzip.compress(data)
            return 200, text + [("content-encoding", "gzip"), ("x-plain-length", str(len(data)))], chunks_of(packed, 4096)
        return 200, text + [("x-plain-length", str(len(data)))], chunks_of(data, 4096)
    if req.path == "/lines":
        n, size = req.arg("n", 10), req.arg("size", 0)
        data = b"".join(b"%08d %s\n" % (i, b"x" * size) for i in range(n))

        async def lines():
            async for piece in chunks_of(data, req.arg("chunk", 7)):
                yield piece
            if req.arg("keep", 0):
                yield FOREVER
        return 200, text, lines()
    if req.path == "/endless":
        size = req.arg("size", 100)

        async def endless():
            i = 0
            while True:
                batch = b"".join(b"%d %s\n" % (i + k, b"x" * size) for k in range(64))
                i += 64
                STATS["endless_lines_sent"] = i
                yield batch
        return 200, text, endless()
    if req.path == "/slow":
        await asyncio.sleep(req.arg("ms", 1000) / 1000)
        return 200, text, body(b"slow\n")
    if req.path == "/never":
        await asyncio.Future()
    if req.path == "/drip":
        return 200, text, body(b"first\n", FOREVER)
    if req.path == "/whoami":
        return 200, text, body((req.peer_cn or "anonymous").encode())
    if req.path == "/status":
        code = req.arg("code", 500)
        return code, text, body(b"status %d\n" % code)
    if req.path == "/stats":
        return 200, [("content-type", "application/json")], body(json.dumps(STATS).encode())
    return 404, text, body(b"not found\n")


def peer_cn(writer):
    sslobj = writer.get_extra_info("ssl_object")
    cert = sslobj.getpeercert() if sslobj else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


# HTTP/1.1

async def serve_h1(reader, writer, cn):
    STATS["h1"] += 1
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers = []
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                name, _, value = h.decode("latin-1").partition(":")
                headers.append((name.strip().lower(), value.strip()))
            hd = dict(headers)
            body = b""
            if "content-length" in hd:
                body = await reader.readexactly(int(hd["content-length"]))
            elif hd.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    body += await reader.readexactly(size)
                    await reader.readline()
                    if size == 0:
                        break
            req = Request(method, target, headers, body, "h1", cn)
            # The client going away (EOF) ends a response that waits or never ends.
            eof = asyncio.ensure_future(reader.read(1))
            respond = asyncio.ensure_future(respond_h1(req, writer))
            done, _ = await asyncio.wait({eof, respond}, return_when=asyncio.FIRST_COMPLETED)
            if os.environ.get("H1_DEBUG"):
                print("h1", target, "eof" if eof in done else "", "responded" if respond in done else "",
                      repr(eof.exception() if eof.done() and not eof.cancelled() else None), file=sys.stderr, flush=True)
            if respond not in done:
                respond.cancel()
                STATS["aborted"] += 1
                return
            eof.cancel()
            try:
                await eof
            except asyncio.CancelledError:
                pass
            if respond.exception():
                STATS["aborted"] += 1
                return
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, ValueError):
        return
    finally:
        writer.close()


async def respond_h1(req, writer):
    status, headers, body = await handle(req)
    names = {k for k, _ in headers}
    chunked = "content-length" not in names and req.method != "HEAD"
    head = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers]
    if chunked:
        head.append("transfer-encoding: chunked")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    async for piece in body:
        if piece is FOREVER:
            await writer.drain()
            await asyncio.Future()
        if req.method == "HEAD":
            continue
        if writer.is_closing():
            raise ConnectionError("the client went away")
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


# HTTP/2

class H2Server:
    def __init__(self, reader, writer, cn):
        self.reader, self.writer, self.cn = reader, writer, cn
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.requests = {}  # stream id -> [headers, body]
        self.tasks = {}  # stream id -> response task
        self.window = asyncio.Event()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def run(self):
        STATS["h2"] += 1
        self.conn.initiate_connection()
        self.flush()
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for ev in self.conn.receive_data(data):
                    if os.environ.get("H2_DEBUG"): print("h2 event", ev, file=sys.stderr, flush=True)
                    self.event(ev)
                self.flush()
        except (ConnectionError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            for task in self.tasks.values():
                if task.cancel():
                    STATS["aborted"] += 1
            self.writer.close()

    def event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            self.requests[ev.stream_id] = [ev.headers, b""]  # answered at StreamEnded
        elif isinstance(ev, h2.events.DataReceived):
            self.requests[ev.stream_id][1] += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.start(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            task = self.tasks.pop(ev.stream_id, None)
            if task and task.cancel():
                STATS["aborted"] += 1
        elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self.window.set()

    def start(self, sid):
        headers, body = self.requests.pop(sid)
        pseudo = dict(h for h in headers if h[0].startswith(":"))
        plain = [(k.lower(), v) for k, v in headers if not k.startswith(":")]
        req = Request(pseudo[":method"], pseudo[":path"], plain, body, "h2", self.cn)
        task = asyncio.ensure_future(self.respond(sid, req))
        self.tasks[sid] = task
        task.add_done_callback(lambda _: self.tasks.pop(sid, None))

    async def respond(self, sid, req):
        status, headers, body = await handle(req)
        self.conn.send_headers(sid, [(":status", str(status))] + headers)
        self.flush()
        async for piece in body:
            if piece is FOREVER:
                await asyncio.Future()
            await self.send(sid, piece)
        self.conn.end_stream(sid)
        self.flush()

    async def send(self, sid, data):
        while data:
            window = self.conn.local_flow_control_window(sid)
            if window <= 0:
                self.window.clear()
                await self.window.wait()
                continue
            n = min(window, len(data), self.conn.max_outbound_frame_size)
            self.conn.send_data(sid, data[:n])
            data = data[n:]
            self.flush()
            await self.writer.drain()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()
    make_certs(args.dir)

    def context(alpn):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(os.path.join(args.dir, "server.crt"), os.path.join(args.dir, "server.key"))
        ctx.load_verify_locations(os.path.join(args.dir, "ca.crt"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(alpn)
        return ctx

    async def on_tls(reader, writer):
        sslobj = writer.get_extra_info("ssl_object")
        cn = peer_cn(writer)
        if sslobj.selected_alpn_protocol() == "h2":
            await H2Server(reader, writer, cn).run()
        else:
            await serve_h1(reader, writer, cn)

    async def on_plain(reader, writer):
        await serve_h1(reader, writer, None)

    silent_connections = []

    async def on_silent(reader, writer):
        silent_connections.append(writer)  # never closed, never answered
        await reader.read()

    host = "127.0.0.1"
    servers = {
        "tls": await asyncio.start_server(on_tls, host, 0, ssl=context(["h2", "http/1.1"])),
        "tls_h1": await asyncio.start_server(on_tls, host, 0, ssl=context(["http/1.1"])),
        "plain": await asyncio.start_server(on_plain, host, 0),
        "silent": await asyncio.start_server(on_silent, host, 0),
    }
    ports = {name: s.sockets[0].getsockname()[1] for name, s in servers.items()}
    print(json.dumps(ports), flush=True)

    def on_stdin():
        if not os.read(0, 4096):
            os._exit(0)  # the test is over: no orderly goodbye owed to anyone
    asyncio.get_running_loop().add_reader(0, on_stdin)
    await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
