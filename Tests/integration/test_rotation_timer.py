"""Rotation by timer: with --enable-secret-rotation every mounted volume is refreshed when
it is due (last successful fetch + interval), whether kubelet republishes it or not, with
the tokens kubelet last gave it while they are valid."""

from __future__ import annotations

import os
import time

from kubeapi_fixture import wait_for
from mounting import publish_request, read_volume, target_path, unpublish_request


def mount_calls(provider) -> int:
    return sum(1 for m, _ in provider.requests if m == "Mount")


def test_a_changed_secret_reaches_the_volume_without_a_republish(mount_env, csi):
    env = mount_env
    env.start("--enable-secret-rotation", "--rotation-poll-interval", "1s")
    target = target_path(env.root, "timer-0")
    env.node().NodePublishVolume(publish_request(csi, target, pod_uid="timer-0"), timeout=20)
    assert read_volume(target) == {"secret.txt": (0o644, b"value")}
    env.provider.files = [("secret.txt", 0, b"rotated by the timer")]
    env.provider.object_versions = [("secret.txt", "v2")]
    # No republish from here on: the driver's own timer must fetch.
    wait_for(lambda: read_volume(target)["secret.txt"][1] == b"rotated by the timer", timeout=30,
             what="the timer-driven refresh")
    env.node().NodeUnpublishVolume(unpublish_request(csi, target, pod_uid="timer-0"), timeout=20)
    calls = mount_calls(env.provider)
    time.sleep(2.5)  # two intervals: an unpublished volume is no longer refreshed
    assert mount_calls(env.provider) == calls


def test_an_unchanged_secret_is_fetched_but_not_rewritten(mount_env, csi):
    env = mount_env
    env.start("--enable-secret-rotation", "--rotation-poll-interval", "1s")
    target = target_path(env.root, "same-0")
    env.node().NodePublishVolume(publish_request(csi, target, pod_uid="same-0"), timeout=20)
    before = os.readlink(os.path.join(target, "..data"))
    calls = mount_calls(env.provider)
    wait_for(lambda: mount_calls(env.provider) >= calls + 2, timeout=30, what="two timer refreshes")
    assert os.readlink(os.path.join(target, "..data")) == before, "unchanged content was rewritten"
    # The versions the volume holds go back to the provider (current_object_version).
    last = [r for m, r in env.provider.requests if m == "Mount"][-1]
    assert [(v.id, v.version) for v in last.current_object_version] == [("secret.txt", "v1")]
    env.node().NodeUnpublishVolume(unpublish_request(csi, target, pod_uid="same-0"), timeout=20)


def test_expired_tokens_wait_for_kubelets_republish(mount_env, csi):
    env = mount_env
    env.start("--enable-secret-rotation", "--rotation-poll-interval", "1s")
    target = target_path(env.root, "tok-0")
    expired = {"vault": {"token": "old-token-value", "expirationTimestamp": "2001-01-01T00:00:00Z"}}
    env.node().NodePublishVolume(publish_request(csi, target, pod_uid="tok-0", tokens=expired), timeout=20)
    calls = mount_calls(env.provider)
    time.sleep(2.5)  # due twice over, but its tokens are no good: no call
    assert mount_calls(env.provider) == calls
    fresh = {"vault": {"token": "new-token-value", "expirationTimestamp": "2099-01-01T00:00:00Z"}}
    env.provider.files = [("secret.txt", 0, b"after republish")]
    env.provider.object_versions = [("secret.txt", "v2")]
    env.node().NodePublishVolume(publish_request(csi, target, pod_uid="tok-0", tokens=fresh), timeout=20)
    assert read_volume(target)["secret.txt"][1] == b"after republish"
    # From then on the timer refreshes with the fresh tokens.
    n = mount_calls(env.provider)
    wait_for(lambda: mount_calls(env.provider) > n, timeout=30, what="a timer refresh with the fresh tokens")
    last = [r for m, r in env.provider.requests if m == "Mount"][-1]
    assert "new-token-value" in last.attributes and "old-token-value" not in last.attributes
    env.node().NodeUnpublishVolume(unpublish_request(csi, target, pod_uid="tok-0"), timeout=20)
