"""/metrics, /healthz and /readyz of a real driver (--metrics-addr), scraped with a
plain HTTP client (urllib) during a workload of publishes (one failing on first
mount, one failing on refresh, one with a missing class) and unpublishes, against
a grpcio provider; and /readyz following a used provider's socket away and back."""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request

import grpc
import pytest

from mounting import publish_request, target_path, unpublish_request
from support import free_tcp_port, wait_until

T = 20  # per-call deadline, seconds
WAIT = 20  # bound for conditions that need a few loop turns, seconds

TOKENS = {"vault": {"token": "eyJhbGciOiJSUzI1NiJ9.metrics-token-value", "expirationTimestamp": "2026-11-27T10:00:00Z"}}

# Never through a proxy from the environment: the driver listens on loopback.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(port: int, path: str) -> tuple[int, dict, str]:
    try:
        with _opener.open(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse(text: str) -> tuple[dict, dict]:
    """Text format 0.0.4, strictly: every sample belongs to a family announced by
    HELP and TYPE before it. Returns ({family: type}, {(name, labels): value})."""
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset], float] = {}
    current = None
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            current = line.split(" ", 3)[2]
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == current, f"TYPE without HELP: {line}"
            assert kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels_text, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if types.get(current) == "histogram" else name
        assert family == current, f"sample {name} outside its family {current}"
        labels = {}
        if labels_text:
            rest = labels_text
            while rest:
                lm = LABEL.match(rest)
                assert lm, f"bad labels in {line!r}"
                labels[lm.group(1)] = lm.group(2)
                rest = rest[lm.end():]
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"duplicate series {line}"
        samples[key] = float(value)
    return types, samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def buckets(samples: dict, name: str, **labels) -> list[tuple[float, float]]:
    out = []
    for (n, ls), v in samples.items():
        d = dict(ls)
        le = d.pop("le", None)
        if n == f"{name}_bucket" and d == labels:
            out.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(out)


def check_histogram(samples: dict, name: str, count: int, **labels) -> None:
    bs = buckets(samples, name, **labels)
    assert bs, f"no buckets for {name}{labels}"
    bounds = [b for b, _ in bs]
    assert bounds[-1] == float("inf")
    assert 120.0 in bounds, f"{name}: buckets stop at {bounds[-2]} s, short of kubelet's 2-minute deadline"
    counts = [c for _, c in bs]
    assert counts == sorted(counts), f"{name}{labels}: buckets are not cumulative: {counts}"
    assert counts[-1] == value(samples, f"{name}_count", **labels) == count
    assert value(samples, f"{name}_sum", **labels) >= 0


@pytest.fixture
def metrics_env(mount_env):
    port = free_tcp_port()
    mount_env.metrics_port = port
    return mount_env


def test_metrics_count_a_workload_with_upstream_names_and_labels(metrics_env, csi):
    env = metrics_env
    port = env.metrics_port
    env.provider.files = [("secret.txt", 0, b"s3cr3t-first-value")]
    env.start(f"--metrics-addr=127.0.0.1:{port}", "--enable-secret-rotation", "--rotation-poll-interval=1ns")
    node = env.node()

    status, headers, text = http_get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    types, samples = parse(text)
    for name, kind in {
        "node_publish_total": "counter", "node_publish_error_total": "counter",
        "node_unpublish_total": "counter", "node_unpublish_error_total": "counter",
        "rotation_reconcile_total": "counter", "rotation_reconcile_error_total": "counter",
        "rotation_reconcile_duration_sec": "histogram", "sync_k8s_secret_total": "counter",
        "k8s_secret_duration_sec": "histogram",
        "secrets_store_node_publish_duration_seconds": "histogram",
        "secrets_store_provider_calls_total": "counter",
        "secrets_store_provider_call_duration_seconds": "histogram",
        "secrets_store_volumes": "gauge", "secrets_store_volume_content_age_seconds": "histogram",
        "secrets_store_volume_content_age_max_seconds": "gauge",
        "secrets_store_volumes_content_age_unknown": "gauge", "secrets_store_build_info": "gauge",
    }.items():
        assert types.get(name) == kind, f"{name}: {types.get(name)}"
    assert [v for (n, _), v in samples.items() if n == "secrets_store_build_info"] == [1.0]
    assert value(samples, "node_unpublish_total", os_type="linux") == 0

    # A first mount, a refresh with nothing new, a refresh that rotates content.
    a = target_path(env.root, "uid-a")
    node.NodePublishVolume(publish_request(csi, a, pod="app-a", pod_uid="uid-a", tokens=TOKENS), timeout=T)
    node.NodePublishVolume(publish_request(csi, a, pod="app-a", pod_uid="uid-a", tokens=TOKENS), timeout=T)
    env.provider.files = [("secret.txt", 0, b"s3cr3t-rotated-value")]
    env.provider.object_versions = [("secret.txt", "v2")]
    node.NodePublishVolume(publish_request(csi, a, pod="app-a", pod_uid="uid-a", tokens=TOKENS), timeout=T)

    _, samples = parse(http_get(port, "/metrics")[2])
    assert value(samples, "secrets_store_volumes") == 1
    check_histogram(samples, "secrets_store_volume_content_age_seconds", 1)

    # The provider now fails with a code: the refresh fails (the call still succeeds,
    # the old content stays), and a first mount fails.
    env.provider.mount_error = "AccessDenied"
    node.NodePublishVolume(publish_request(csi, a, pod="app-a", pod_uid="uid-a", tokens=TOKENS), timeout=T)
    b = target_path(env.root, "uid-b")
    with pytest.raises(grpc.RpcError) as ei:
        node.NodePublishVolume(publish_request(csi, b, pod="app-b", pod_uid="uid-b"), timeout=T)
    assert ei.value.code() == grpc.StatusCode.INTERNAL
    # A class that does not exist.
    c = target_path(env.root, "uid-c")
    with pytest.raises(grpc.RpcError) as ei:
        node.NodePublishVolume(publish_request(csi, c, spc="no-such-class", pod="app-c", pod_uid="uid-c"), timeout=T)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    node.NodeUnpublishVolume(unpublish_request(csi, a), timeout=T)

    status, _, text = http_get(port, "/metrics")
    assert status == 200
    _, samples = parse(text)
    # Upstream's counters.
    assert value(samples, "node_publish_total", os_type="linux", provider="fake") == 3
    assert value(samples, "node_publish_error_total", os_type="linux", provider="fake", error_type="AccessDenied") == 2
    assert value(samples, "node_publish_error_total", os_type="linux", provider="",
                 error_type="SecretProviderClassNotFound") == 1
    # Refreshes: the two republishes above, plus whatever the rotation timer (due every 1ns
    # here) managed meanwhile; each successful one is timed.
    unchanged = value(samples, "rotation_reconcile_total", os_type="linux", provider="fake", rotated="false")
    rotated = value(samples, "rotation_reconcile_total", os_type="linux", provider="fake", rotated="true")
    assert unchanged >= 1 and rotated >= 1, (unchanged, rotated)
    assert value(samples, "rotation_reconcile_error_total", os_type="linux", provider="fake", rotated="false",
                 error_type="AccessDenied") >= 1
    check_histogram(samples, "rotation_reconcile_duration_sec", unchanged + rotated, os_type="linux")
    assert value(samples, "node_unpublish_total", os_type="linux") == 1
    assert value(samples, "node_unpublish_error_total", os_type="linux") == 0
    # Ours.
    for outcome, n in {"mounted": 1, "refreshed": 2, "refresh_failed": 1, "failed": 1}.items():
        check_histogram(samples, "secrets_store_node_publish_duration_seconds", n, provider="fake", outcome=outcome)
    check_histogram(samples, "secrets_store_node_publish_duration_seconds", 1, provider="", outcome="failed")
    # At least five Mount calls (the timer adds its own), all answered: a MountResponse
    # error code is a gRPC success.
    mounts = value(samples, "secrets_store_provider_calls_total", provider="fake", method="Mount", code="OK")
    assert mounts >= 5
    assert mounts <= len(env.provider.calls("Mount"))  # the provider saw each before its answer was counted
    check_histogram(samples, "secrets_store_provider_call_duration_seconds", mounts, provider="fake", method="Mount", code="OK")
    assert value(samples, "secrets_store_volumes") == 0

    # Every label is bounded: no pod names, uids, paths, tokens or secret values.
    for (name, labels), _ in samples.items():
        for k, v in labels:
            assert k in {"os_type", "provider", "error_type", "rotated", "outcome", "method", "code", "le", "version",
                         "priority", "trigger", "result", "source"}, (name, k)
    for leak in ("app-a", "app-b", "uid-a", "uid-b", str(env.root), "metrics-token-value", "s3cr3t"):
        assert leak not in text, f"{leak!r} appears in /metrics"


def test_readyz_follows_a_used_providers_socket(metrics_env, csi):
    env = metrics_env
    port = env.metrics_port
    env.start(f"--metrics-addr=127.0.0.1:{port}")

    status, _, body = http_get(port, "/healthz")
    assert (status, body) == (200, "ok\n")
    # No provider used yet: ready once the CSI socket is served.
    wait_until(lambda: http_get(port, "/readyz")[0] == 200, WAIT, "/readyz to report ready")
    status, _, body = http_get(port, "/readyz")
    assert status == 200, body
    assert "[+] csi: serving" in body and "provider \"" not in body

    a = target_path(env.root, "uid-r")
    env.node().NodePublishVolume(publish_request(csi, a, pod="app-r", pod_uid="uid-r"), timeout=T)
    status, _, body = http_get(port, "/readyz")
    assert status == 200, body
    assert '[+] provider "fake": answers Version' in body

    env.provider.stop()  # the socket file goes with it
    wait_until(lambda: http_get(port, "/readyz")[0] == 503, WAIT, "/readyz to report the provider gone")
    status, _, body = http_get(port, "/readyz")
    assert status == 503
    assert '[-] provider "fake"' in body, body
    assert body.rstrip().endswith("not ready")
    # Liveness is about the driver, not its providers.
    assert http_get(port, "/healthz")[0] == 200

    env.provider.start()
    wait_until(lambda: http_get(port, "/readyz")[0] == 200, WAIT, "/readyz to report the provider back")
    env.node().NodeUnpublishVolume(unpublish_request(csi, a), timeout=T)


def test_responder_refuses_what_it_does_not_serve(metrics_env):
    env = metrics_env
    port = env.metrics_port
    env.start(f"--metrics-addr=127.0.0.1:{port}")
    assert http_get(port, "/nope")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/metrics")  # Content-Length: 0
    r = conn.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics", headers={"X-Big": "a" * 9000})
    assert conn.getresponse().status == 431
    conn.close()


@pytest.mark.parametrize("value", ["0", ""])
def test_metrics_addr_zero_or_empty_turns_the_endpoint_off(mount_env, value):
    driver = mount_env.start(f"--metrics-addr={value}")
    assert "serving metrics" not in driver.stderr()
    assert "cannot serve metrics" not in driver.stderr()


def test_scrapes_during_a_burst_parse_and_only_grow(metrics_env, csi):
    """Publishes and unpublishes from several threads while another scrapes in a
    loop: every scrape parses, and counters never go down between scrapes."""
    import threading
    from concurrent import futures

    env = metrics_env
    port = env.metrics_port
    env.start(f"--metrics-addr=127.0.0.1:{port}")
    node = env.node()
    stop = threading.Event()
    scrapes: list[dict] = []
    problems: list[str] = []

    def scrape_loop():
        while not stop.is_set():
            status, _, text = http_get(port, "/metrics")
            if status != 200:
                problems.append(f"status {status}")
                continue
            try:
                scrapes.append(parse(text)[1])
            except AssertionError as e:
                problems.append(str(e))

    scraper = threading.Thread(target=scrape_loop)
    scraper.start()
    try:
        def cycle(i: int) -> None:
            t = target_path(env.root, f"uid-burst-{i}")
            node.NodePublishVolume(publish_request(csi, t, pod=f"burst-{i}", pod_uid=f"uid-burst-{i}"), timeout=T)
            node.NodeUnpublishVolume(unpublish_request(csi, t), timeout=T)

        with futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(cycle, range(24)))
        # At least one scrape after the burst.
        n = len(scrapes)
        wait_until(lambda: len(scrapes) > n, WAIT, "a scrape after the burst")
    finally:
        stop.set()
        scraper.join(timeout=30)
    assert not problems, problems[:3]
    final = scrapes[-1]
    assert value(final, "node_publish_total", os_type="linux", provider="fake") == 24
    assert value(final, "node_unpublish_total", os_type="linux") == 24
    assert value(final, "secrets_store_volumes") == 0
    for name in ("node_publish_total", "node_unpublish_total", "secrets_store_provider_calls_total"):
        series = {k for s in scrapes for k in s if k[0] == name}
        for key in series:
            seen = [s.get(key, 0.0) for s in scrapes]
            assert seen == sorted(seen), f"{key} went down between scrapes: {seen}"
    # The driver shuts down cleanly with the responder in it.
    assert env.driver.stop() == 0, env.driver.describe()
    assert "left open" not in env.driver.stderr(), env.driver.describe()


def test_cluster_mode_counts_synced_secrets_and_readyz_waits_for_the_cache(kube_api, workdir, start_driver, csi):
    """In cluster mode: /readyz is ready once the class cache has synced (the same
    condition as Probe), and a class with secretObjects counts its Secrets in
    sync_k8s_secret_total and times the sync in k8s_secret_duration_sec."""
    from fake_provider import FakeProvider
    from mounting import unmount_everything_under
    from test_cluster_mode import DRIVER_RULES, DRIVER_USER, NS

    providers = workdir / "providers"
    providers.mkdir()
    provider = FakeProvider(providers / "fake.sock").start()
    provider.files = [("db-password", 0o644, b"s3cr3t-db-value")]
    provider.object_versions = [("db-password", "v1")]
    try:
        kube_api.ensure_namespace(NS)
        token = kube_api.add_token(DRIVER_USER, rules=DRIVER_RULES)
        port = free_tcp_port()
        driver = start_driver(
            "--kubeconfig", str(kube_api.kubeconfig_for(token, "driver")), "--provider-volume", str(providers),
            "--additional-provider-volume-paths", "", f"--metrics-addr=127.0.0.1:{port}", nodeid="node-1")
        wait_until(lambda: http_get(port, "/readyz")[0] == 200, WAIT, "/readyz once the class cache has synced")
        assert "[+] driver: ready" in http_get(port, "/readyz")[2]

        kube_api.create_spc("app-secrets", namespace=NS, parameters={"objects": "db-password"}, secret_objects=[
            {"secretName": "db", "type": "Opaque", "data": [{"objectName": "db-password", "key": "password"}]}])
        pod = kube_api.create_pod("web-0", namespace=NS, node="node-1")
        uid = pod["metadata"]["uid"]
        target = target_path(workdir, uid)
        node = csi.grpc.NodeStub(driver.channel())
        node.NodePublishVolume(
            publish_request(csi, target, spc="app-secrets", namespace=NS, pod="web-0", pod_uid=uid), timeout=30)
        kube_api.wait_for_object(f"/api/v1/namespaces/{NS}/secrets/db", what="the synced Secret")

        def synced() -> bool:
            _, samples = parse(http_get(port, "/metrics")[2])
            return value(samples, "sync_k8s_secret_total", os_type="linux", provider="fake") >= 1
        wait_until(synced, WAIT, "sync_k8s_secret_total to count the Secret")
        _, samples = parse(http_get(port, "/metrics")[2])
        assert value(samples, "sync_k8s_secret_total", os_type="linux", provider="fake") == 1
        check_histogram(samples, "k8s_secret_duration_sec", 1, os_type="linux")
        assert value(samples, "node_publish_total", os_type="linux", provider="fake") == 1
        node.NodeUnpublishVolume(unpublish_request(csi, target, pod_uid=uid), timeout=30)
    finally:
        provider.stop()
        unmount_everything_under(workdir)


def test_a_busy_port_is_logged_and_bound_once_it_is_free(metrics_env, csi):
    """Another process holds the port: the driver serves CSI anyway, says so once,
    and serves /healthz as soon as the port is free (a previous driver on the same
    host network may still be draining)."""
    import socket

    env = metrics_env
    port = env.metrics_port
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        driver = env.start(f"--metrics-addr=127.0.0.1:{port}")
        assert "cannot serve metrics and health endpoints" in driver.stderr()
        # CSI is served meanwhile.
        assert csi.grpc.NodeStub(driver.channel()).NodeGetInfo(csi.pb2.NodeGetInfoRequest(), timeout=10).node_id
    finally:
        holder.close()

    def healthy() -> bool:
        try:
            return http_get(port, "/healthz")[0] == 200
        except OSError:
            return False
    wait_until(healthy, WAIT, "/healthz once the port is free")
    assert driver.stderr().count("cannot serve metrics and health endpoints") == 1
    assert driver.stop() == 0, driver.describe()
    assert "left open" not in driver.stderr(), driver.describe()
