"""A rolling update of the DaemonSet: the next driver starts on the same socket path while
the previous one is still serving, then the previous one gets SIGTERM and drains. No publish
or unpublish may fail, and the socket must still be there, served by the new driver, after
the old one has exited."""

from __future__ import annotations

import signal
import threading
import time

import grpc

from mounting import publish_request, read_volume, target_path, unpublish_request
from support import channel_for, is_socket

CYCLES = 40  # publish+unpublish cycles per client thread
CLIENTS = 3


def test_second_driver_takes_the_socket_over_while_the_first_drains(mount_env, workdir, csi):
    env = mount_env
    env.provider.delay = 0.05  # publishes are in flight when the old driver is told to stop
    sock = workdir / "csi.sock"
    endpoint = f"unix://{sock}"
    old = env._start_driver(
        "--provider-volume", str(env.providers), "--additional-provider-volume-paths", "",
        "--spc-dir", str(env.spcs), endpoint=endpoint)

    # One channel, as kubelet keeps one: it reconnects to the path when a connection ends.
    channel = channel_for(endpoint)
    node = csi.grpc.NodeStub(channel)
    failures: list[str] = []
    progress = [0] * CLIENTS
    halfway = threading.Event()

    def client(i: int) -> None:
        for n in range(CYCLES):
            uid = f"roll-{i}-{n}"
            target = target_path(env.root, uid)
            try:
                node.NodePublishVolume(publish_request(csi, target, pod_uid=uid), timeout=30)
                if read_volume(target) != {"secret.txt": (0o644, b"value")}:
                    failures.append(f"{uid}: wrong content")
                node.NodeUnpublishVolume(unpublish_request(csi, target, pod_uid=uid), timeout=30)
            except grpc.RpcError as e:
                failures.append(f"{uid}: {e.code().name} {e.details()}")
            progress[i] = n + 1
            if min(progress) >= CYCLES // 4:
                halfway.set()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    assert halfway.wait(timeout=120), f"clients made no progress: {failures[:5]}"
    old_inode = sock.stat().st_ino
    new = env._start_driver(
        "--provider-volume", str(env.providers), "--additional-provider-volume-paths", "",
        "--spc-dir", str(env.spcs), endpoint=endpoint, ready=False)
    # The new driver has taken the path once the socket file there is another one.
    for _ in range(2000):
        if is_socket(sock) and sock.stat().st_ino != old_inode:
            break
        assert new.proc.poll() is None, new.describe()
        time.sleep(0.005)
    else:
        raise AssertionError(f"the new driver never bound the socket\n{new.describe()}")
    old.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    assert old.proc.wait(timeout=30) == 0, old.describe()
    channel.close()

    assert failures == [], f"{failures[:5]}\n--- old ---\n{old.describe()}\n--- new ---\n{new.describe()}"
    assert all(p == CYCLES for p in progress)
    # The old driver's exit left the new driver's socket in place, and it answers.
    assert is_socket(sock)
    new.close_channel()
    new.wait_ready(csi, timeout=5)
    assert "Mount" in str([m for m, _ in env.provider.requests])
