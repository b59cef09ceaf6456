"""The driver's gRPC server under bad input, deadlines, load and abrupt clients."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from h2_client import raw_unary
from support import channel_for, valid_publish_request

T = 10


def probe(csi, ch) -> None:
    r = csi.grpc.IdentityStub(ch).Probe(csi.pb2.ProbeRequest(), timeout=T)
    assert r.ready.value


def node_info(csi, ch) -> str:
    return csi.grpc.NodeStub(ch).NodeGetInfo(csi.pb2.NodeGetInfoRequest(), timeout=T).node_id


# ---- malformed messages

GARBAGE = {
    "truncated-length": b"\x0a\x05ab",  # field 1, length 5, only 2 bytes follow
    "overlong-varint": b"\x08" + b"\xff" * 11,  # varint longer than 10 bytes
    "bad-wire-type": b"\x0f\x00",  # wire type 7 does not exist
    "truncated-tag": b"\xff",  # tag varint never ends
}


@pytest.mark.parametrize("method", [
    "/csi.v1.Node/NodePublishVolume",
    "/csi.v1.Node/NodeUnpublishVolume",
    "/csi.v1.Identity/GetPluginInfo",
])
@pytest.mark.parametrize("garbage", list(GARBAGE), ids=list(GARBAGE))
def test_malformed_request_is_invalid_argument(driver, csi, method, garbage):
    call = driver.channel().unary_unary(method)  # identity (de)serializers: raw bytes
    with pytest.raises(grpc.RpcError) as ei:
        call(GARBAGE[garbage], timeout=T)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value
    probe(csi, driver.channel())  # and the server carries on


# ---- deadlines


@pytest.mark.parametrize("timeout", [0.5, 10, 3600, 100 * 86400])
def test_calls_with_deadlines_succeed(driver, csi, timeout):
    """grpcio encodes each deadline in a different grpc-timeout unit; the
    server must accept them all."""
    stub = csi.grpc.NodeStub(driver.channel())
    assert stub.NodeGetInfo(csi.pb2.NodeGetInfoRequest(), timeout=timeout).node_id == "test-node"


def test_server_honours_grpc_timeout_of_stalled_request(driver, csi):
    """A request whose body never arrives must be ended by the server once its
    grpc-timeout has passed (DEADLINE_EXCEEDED, or a reset stream), not held
    open forever. Raw HTTP/2, because grpcio would time out on its own side."""
    res = raw_unary(str(driver.socket_path), "/csi.v1.Node/NodeGetInfo", None,
                    extra_headers=[("grpc-timeout", "200m")], end_stream=False, wait=T)
    assert res.ended or res.reset_code is not None, (
        "server kept a request open past its grpc-timeout "
        f"(headers={res.headers}, trailers={res.trailers})")
    if res.reset_code is None:
        assert res.status() == str(grpc.StatusCode.DEADLINE_EXCEEDED.value[0]), (
            res.headers, res.trailers)
    probe(csi, driver.channel())


def test_client_side_deadline_mid_request(driver, csi):
    """A grpcio call that times out while still sending: the client resets the
    stream; the server must drop it and carry on."""
    call = driver.channel().stream_unary("/csi.v1.Node/NodeGetInfo")
    stop = threading.Event()

    def stalled():
        stop.wait(T)  # headers go out, the request message never does
        yield b""

    try:
        with pytest.raises(grpc.RpcError) as ei:
            call(stalled(), timeout=0.3)
        assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        stop.set()
    assert node_info(csi, driver.channel()) == "test-node"


def test_raw_unary_round_trip(driver, csi):
    """The raw HTTP/2 client itself works against the driver (guards the test above)."""
    res = raw_unary(str(driver.socket_path), "/csi.v1.Node/NodeGetInfo", b"",
                    extra_headers=[("grpc-timeout", "5S")])
    assert res.ended and res.status() == "0", (res.headers, res.trailers)
    assert res.data[:1] == b"\x00"
    n = int.from_bytes(res.data[1:5], "big")
    assert csi.pb2.NodeGetInfoResponse.FromString(bytes(res.data[5:5 + n])).node_id == "test-node"


def test_many_short_deadlines_do_not_wedge_the_server(driver, csi, workdir):
    """Calls whose deadline expires while on the wire or in the server must be
    dropped cleanly: none may leak into a later call's answer."""
    stub = csi.grpc.NodeStub(driver.channel())
    req = valid_publish_request(csi, workdir)
    futs = [stub.NodePublishVolume.future(req, timeout=0.001 * (i % 5 + 1)) for i in range(100)]
    for f in futs:
        try:
            f.result(timeout=T)
        except grpc.RpcError:
            pass  # DEADLINE_EXCEEDED or the call's normal outcome; either is fine
        except grpc.FutureTimeoutError:
            pytest.fail("a call with a short deadline never completed")
    assert stub.NodeGetInfo(csi.pb2.NodeGetInfoRequest(), timeout=T).node_id == "test-node"


# ---- concurrency


def test_64_concurrent_calls_on_one_channel(driver, csi):
    ch = driver.channel()
    barrier = threading.Barrier(64, timeout=T)

    def one(i: int) -> str:
        barrier.wait()
        if i % 2:
            return node_info(csi, ch)
        probe(csi, ch)
        return "test-node"

    with ThreadPoolExecutor(max_workers=64) as ex:
        results = list(ex.map(one, range(64), timeout=3 * T))
    assert results == ["test-node"] * 64


def test_64_concurrent_calls_on_separate_channels(driver, csi):
    channels = [channel_for(driver.endpoint) for _ in range(64)]
    try:
        barrier = threading.Barrier(64, timeout=T)

        def one(ch) -> str:
            barrier.wait()
            return node_info(csi, ch)

        with ThreadPoolExecutor(max_workers=64) as ex:
            results = list(ex.map(one, channels, timeout=3 * T))
        assert results == ["test-node"] * 64
    finally:
        for ch in channels:
            ch.close()


# ---- abrupt clients


def test_channel_closed_mid_flight_does_not_break_server(driver, csi, workdir):
    for _ in range(5):
        ch = channel_for(driver.endpoint)
        node = csi.grpc.NodeStub(ch)
        ident = csi.grpc.IdentityStub(ch)
        req = valid_publish_request(csi, workdir)
        futs = []
        for i in range(50):
            futs.append(node.NodeGetInfo.future(csi.pb2.NodeGetInfoRequest(), timeout=T))
            futs.append(ident.GetPluginInfo.future(csi.pb2.GetPluginInfoRequest(), timeout=T))
            futs.append(node.NodePublishVolume.future(req, timeout=T))
        ch.close()  # cancels whatever has not completed
        for f in futs:
            try:
                f.result(timeout=T)
            except grpc.RpcError:
                pass
    # A fresh client is served normally.
    probe(csi, driver.channel())
    assert node_info(csi, driver.channel()) == "test-node"


@pytest.mark.parametrize("payload", [
    b"",  # connect and hang up
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # preface, then hang up
    b"PRI * HTTP/2.0\r\n",  # half a preface
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # HTTP/1.1
    bytes(range(256)) * 8,  # noise
    # preface, then a SETTINGS frame whose length says 1 MiB
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x10\x00\x00\x04\x00\x00\x00\x00\x00",
], ids=["empty", "preface", "half-preface", "http1", "noise", "huge-frame"])
def test_raw_garbage_connections_do_not_break_server(driver, csi, payload):
    for _ in range(3):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(T)
        try:
            s.connect(str(driver.socket_path))
            if payload:
                s.sendall(payload)
        except OSError:
            pass  # the server may hang up on us first; that is fine
        finally:
            s.close()
    probe(csi, driver.channel())


def test_idle_raw_connection_does_not_block_others(driver, csi):
    """A client that connects and never speaks must not stall other clients."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(driver.socket_path))
        ch = channel_for(driver.endpoint)
        try:
            probe(csi, ch)
        finally:
            ch.close()
    finally:
        s.close()


# ---- message size limits


def big_publish(csi, workdir, size: int):
    return valid_publish_request(csi, workdir, extra_context={"padding": "x" * size})


def test_request_over_max_recv_size_is_resource_exhausted(start_driver, csi, workdir):
    d = start_driver("--max-call-recv-msg-size", "65536")
    node = csi.grpc.NodeStub(d.channel())
    with pytest.raises(grpc.RpcError) as ei:
        node.NodePublishVolume(big_publish(csi, workdir, 100_000), timeout=T)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value
    # Under the limit the request is judged on its content, not its size.
    with pytest.raises(grpc.RpcError) as ei:
        node.NodePublishVolume(big_publish(csi, workdir, 30_000), timeout=T)
    assert ei.value.code() != grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value
    # The connection survives the refusal.
    probe(csi, d.channel())


def test_default_max_recv_size_is_4mib(start_driver, csi, workdir):
    d = start_driver()
    node = csi.grpc.NodeStub(d.channel())
    with pytest.raises(grpc.RpcError) as ei:
        node.NodePublishVolume(big_publish(csi, workdir, 4 * 1024 * 1024 + 1024), timeout=T)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value
    with pytest.raises(grpc.RpcError) as ei:
        node.NodePublishVolume(big_publish(csi, workdir, 3 * 1024 * 1024), timeout=T)
    assert ei.value.code() != grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value
    probe(csi, d.channel())


def test_oversized_requests_concurrently_with_normal_ones(start_driver, csi, workdir):
    d = start_driver("--max-call-recv-msg-size", "65536")
    ch = d.channel()
    node = csi.grpc.NodeStub(ch)
    big = big_publish(csi, workdir, 200_000)
    futs_big = [node.NodePublishVolume.future(big, timeout=T) for _ in range(8)]
    futs_small = [node.NodeGetInfo.future(csi.pb2.NodeGetInfoRequest(), timeout=T)
                  for _ in range(32)]
    for f in futs_small:
        assert f.result(timeout=T).node_id == "test-node"
    for f in futs_big:
        with pytest.raises(grpc.RpcError) as ei:
            f.result(timeout=T)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# ---- readiness


def test_probe_is_not_ready_after_the_loop_stalled_and_ready_again_later(driver, csi):
    """A frozen process is a stalled loop: once it runs again, Probe answers
    not ready (the stall is longer than the driver's 2 s bound) for a while,
    then ready again, and the stall is logged."""
    import os
    import signal
    import time

    from support import wait_until

    identity = csi.grpc.IdentityStub(driver.channel())
    assert identity.Probe(csi.pb2.ProbeRequest(), timeout=T).ready.value is True
    os.kill(driver.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(3)  # the stall itself, not a wait for something to happen
    finally:
        os.kill(driver.proc.pid, signal.SIGCONT)
    assert identity.Probe(csi.pb2.ProbeRequest(), timeout=T).ready.value is False
    wait_until(lambda: identity.Probe(csi.pb2.ProbeRequest(), timeout=T).ready.value, 30,
               "Probe to answer ready again after the stall")
    wait_until(lambda: "event loop stalled" in driver.stderr(), 10, "the stall to be logged")
