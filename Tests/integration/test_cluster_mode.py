"""The driver in a cluster, end to end: the real driver binary with --kubeconfig against
the test Kubernetes API server, a grpcio provider, and this test playing kubelet. What a
user sees is checked the way a user looks: with kubectl."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest

from fake_provider import FakeProvider
from kubeapi_fixture import wait_for
from mounting import publish_request, read_volume, target_path, unmount_everything_under, unpublish_request

NS = "shop"
DRIVER_USER = "system:serviceaccount:kube-system:secrets-store-csi-driver"
# What deploy/ grants the driver (its ClusterRole, plus the sync-secret component).
DRIVER_RULES = [
    {"apiGroups": ["secrets-store.csi.x-k8s.io"], "resources": ["secretproviderclasses"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["secrets-store.csi.x-k8s.io"], "resources": ["secretproviderclasspodstatuses"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
]
GROUP = "/apis/secrets-store.csi.x-k8s.io/v1"

CERT = b"-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nMIIEkey\n-----END PRIVATE KEY-----\n"


class Cluster:
    """One API server, one node's driver in cluster mode, one provider named "fake"."""

    def __init__(self, kube_api, workdir: Path, start_driver, csi):
        self.api = kube_api
        self.csi = csi
        self.root = workdir
        providers = workdir / "providers"
        providers.mkdir()
        self.provider = FakeProvider(providers / "fake.sock").start()
        self.provider.files = [("db-password", 0o644, b"s3cr3t-db-value"), ("tls", 0o644, KEY + CERT)]
        self.provider.object_versions = [("db-password", "v1"), ("tls", "v1")]
        kube_api.ensure_namespace(NS)
        # The driver runs as its service account, with exactly the permissions deploy/ grants.
        self.token = kube_api.add_token(DRIVER_USER, rules=DRIVER_RULES)
        self.driver = start_driver(
            "--kubeconfig", str(kube_api.kubeconfig_for(self.token, "driver")), "--provider-volume", str(providers),
            "--additional-provider-volume-paths", "", "--enable-secret-rotation", "--rotation-poll-interval", "200ms",
            "-v=5", nodeid="node-1")
        self.node = csi.grpc.NodeStub(self.driver.channel())

    def pod(self, name: str) -> dict:
        return self.api.create_pod(name, namespace=NS, node="node-1")

    def publish(self, pod: dict, spc: str = "app-secrets", volume: str = "secrets") -> str:
        uid = pod["metadata"]["uid"]
        target = target_path(self.root, uid, volume)
        self.node.NodePublishVolume(
            publish_request(self.csi, target, spc=spc, namespace=NS, pod=pod["metadata"]["name"], pod_uid=uid), timeout=30)
        return target

    def unpublish(self, pod: dict, target: str) -> None:
        self.node.NodeUnpublishVolume(unpublish_request(self.csi, target, pod_uid=pod["metadata"]["uid"]), timeout=30)

    def close(self) -> None:
        self.provider.stop()
        unmount_everything_under(self.root)


@pytest.fixture
def cluster(kube_api, workdir, start_driver, csi):
    c = Cluster(kube_api, workdir, start_driver, csi)
    try:
        yield c
    finally:
        c.close()


def driver_requests(api, since: int) -> dict:
    """Requests the driver made since `since`, counted by "verb resource"."""
    counts: dict = {}
    for r in api.requests(since=since)["requests"]:
        if r.get("user") == DRIVER_USER and r.get("verb") not in (None, "discovery"):
            key = f"{r['verb']} {r['resource']}{'/' + r['subresource'] if r.get('subresource') else ''}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def status_path(name: str) -> str:
    return f"{GROUP}/namespaces/{NS}/secretproviderclasspodstatuses/{name}"


def test_publish_writes_the_status_object_users_look_up(cluster):
    api = cluster.api
    api.create_spc("app-secrets", namespace=NS, parameters={"objects": "db-password"})
    pod = cluster.pod("web-0")
    target = cluster.publish(pod)
    assert read_volume(target)["db-password"] == (0o644, b"s3cr3t-db-value")

    name = f"web-0-{NS}-app-secrets"
    obj = api.wait_for_object(status_path(name), what="the status object")
    # As a user sees it, with the name the OpenShift docs give.
    shown = api.kubectl_json("get", "secretproviderclasspodstatus", name, "-n", NS)
    assert shown["status"] == {
        "podName": "web-0", "secretProviderClassName": "app-secrets", "mounted": True, "targetPath": target,
        "objects": [{"id": "db-password", "version": "v1"}, {"id": "tls", "version": "v1"}]}
    labels = obj["metadata"]["labels"]
    assert labels["internal.secrets-store.csi.k8s.io/node-name"] == "node-1"
    assert labels["secrets-store.csi.k8s.io/pod-uid"] == pod["metadata"]["uid"]
    owners = obj["metadata"]["ownerReferences"]
    assert owners == [{"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": pod["metadata"]["uid"]}]
    # Found by selector too.
    listed = api.kubectl_json("get", "secretproviderclasspodstatuses", "-n", NS, "-l", f"secrets-store.csi.k8s.io/pod-uid={pod['metadata']['uid']}")
    assert [i["metadata"]["name"] for i in listed["items"]] == [name]

    # A rotation updates it.
    cluster.provider.object_versions = [("db-password", "v2"), ("tls", "v1")]
    cluster.provider.files = [("db-password", 0o644, b"rotated-value"), ("tls", 0o644, KEY + CERT)]
    time.sleep(0.3)  # the volume becomes due (200ms interval); kubelet then republishes
    cluster.publish(pod)
    assert read_volume(target)["db-password"][1] == b"rotated-value"
    api.wait_for_object(status_path(name), lambda o: {"id": "db-password", "version": "v2"} in o["status"]["objects"],
                        what="the rotated version in the status object")

    cluster.unpublish(pod, target)
    api.wait_gone(status_path(name))


def test_a_cluster_mode_driver_loads_libcurl_for_the_api_server(cluster):
    """libcurl is not linked but loaded on the first request (CCurl): once the driver has
    talked to the API server it is mapped (the counterpart of test_mount's standalone check)."""
    cluster.api.create_spc("app-secrets", namespace=NS)
    wait_for(lambda: "SecretProviderClass cache synced" in cluster.driver.stderr(), what="cache sync")
    maps = Path(f"/proc/{cluster.driver.proc.pid}/maps").read_text()
    assert "libcurl.so.4" in maps


@pytest.mark.parametrize("library, reason", [
    ("libcurl-not-installed.so.4", "cannot open shared object file"),
    ("libz.so.1", "undefined symbol: curl_"),  # a library that is there but is not libcurl
])
def test_without_a_usable_libcurl_requests_fail_clearly_and_the_driver_keeps_serving(
        kube_api, workdir, start_driver, csi, monkeypatch, library, reason):
    """CCURL_TEST_LIBRARY (test-only) replaces the library name CCurl opens. The API
    requests then fail with the library's name and dlerror()'s text; nothing crashes."""
    kube_api.ensure_namespace(NS)
    kube_api.create_spc("app-secrets", namespace=NS)
    token = kube_api.add_token(DRIVER_USER, rules=DRIVER_RULES)
    providers = workdir / "providers"
    providers.mkdir()
    provider = FakeProvider(providers / "fake.sock").start()
    monkeypatch.setenv("CCURL_TEST_LIBRARY", library)
    try:
        driver = start_driver(
            "--kubeconfig", str(kube_api.kubeconfig_for(token, "driver")), "--provider-volume", str(providers),
            "--additional-provider-volume-paths", "", nodeid="node-1")
        pod = kube_api.create_pod("web-0", namespace=NS, node="node-1")
        target = target_path(workdir, pod["metadata"]["uid"], "secrets")
        with pytest.raises(grpc.RpcError) as failed:
            csi.grpc.NodeStub(driver.channel()).NodePublishVolume(
                publish_request(csi, target, spc="app-secrets", namespace=NS, pod="web-0", pod_uid=pod["metadata"]["uid"]),
                timeout=30)
        assert f"libcurl ({library}) could not be loaded" in failed.value.details(), failed.value
        assert reason in failed.value.details(), failed.value
        assert provider.calls("Mount") == []
        assert not Path(target).exists()
        csi.grpc.IdentityStub(driver.channel()).Probe(csi.pb2.ProbeRequest(), timeout=5)
        assert driver.proc.poll() is None, driver.describe()
    finally:
        provider.stop()
        unmount_everything_under(workdir)


def test_publish_costs_no_class_read_once_the_cache_has_synced(cluster):
    api = cluster.api
    api.create_spc("app-secrets", namespace=NS)
    pods = [cluster.pod(f"p-{i}") for i in range(5)]
    # The class reached the cache through the watch.
    wait_for(lambda: cluster.driver.stderr().count("SecretProviderClass cache synced") >= 1, what="cache sync")
    time.sleep(0.2)
    start = api.requests()["next"]
    targets = [cluster.publish(p) for p in pods]
    names = [f"p-{i}-{NS}-app-secrets" for i in range(5)]
    for n in names:
        api.wait_for_object(status_path(n))
    counts = driver_requests(api, start)
    assert counts.get("get secretproviderclasses", 0) == 0, counts
    # One request per publish: the status object's create.
    assert counts.get("create secretproviderclasspodstatuses", 0) == 5, counts
    assert sum(counts.values()) == 5, counts
    for p, t in zip(pods, targets):
        cluster.unpublish(p, t)


def test_secret_objects_are_synced_opaque_and_tls_and_follow_rotation(cluster):
    api = cluster.api
    api.create_spc("app-secrets", namespace=NS, secret_objects=[
        {"secretName": "db", "type": "Opaque", "labels": {"app": "web"},
         "data": [{"objectName": "db-password", "key": "password"}]},
        {"secretName": "web-tls", "type": "kubernetes.io/tls",
         "data": [{"objectName": "tls", "key": "tls.crt"}, {"objectName": "tls", "key": "tls.key"}]},
    ])
    pod = cluster.pod("web-0")
    target = cluster.publish(pod)
    db = api.wait_for_object(f"/api/v1/namespaces/{NS}/secrets/db", what="the synced Secret")
    import base64
    assert base64.b64decode(db["data"]["password"]) == b"s3cr3t-db-value"
    assert db["metadata"]["labels"] == {"app": "web", "secrets-store.csi.k8s.io/managed": "true"}
    assert [o["kind"] for o in db["metadata"]["ownerReferences"]] == ["SecretProviderClassPodStatus"]
    tls = api.wait_for_object(f"/api/v1/namespaces/{NS}/secrets/web-tls")
    assert tls["type"] == "kubernetes.io/tls"
    assert base64.b64decode(tls["data"]["tls.crt"]) == CERT
    assert base64.b64decode(tls["data"]["tls.key"]) == KEY

    # Rotated content reaches the Secret.
    cluster.provider.object_versions = [("db-password", "v2"), ("tls", "v1")]
    cluster.provider.files = [("db-password", 0o644, b"rotated"), ("tls", 0o644, KEY + CERT)]
    time.sleep(0.3)
    cluster.publish(pod)
    api.wait_for_object(f"/api/v1/namespaces/{NS}/secrets/db",
                        lambda s: base64.b64decode(s["data"]["password"]) == b"rotated", what="the rotated Secret")

    # The last consumer going away removes it (its status object goes, the GC follows).
    cluster.unpublish(pod, target)
    api.run_gc()
    api.wait_gone(f"/api/v1/namespaces/{NS}/secrets/db")
    api.wait_gone(f"/api/v1/namespaces/{NS}/secrets/web-tls")


def test_two_pods_share_a_secret_and_one_leaving_keeps_it(cluster):
    api = cluster.api
    api.create_spc("app-secrets", namespace=NS, secret_objects=[
        {"secretName": "db", "data": [{"objectName": "db-password", "key": "password"}]}])
    a, b = cluster.pod("web-a"), cluster.pod("web-b")
    ta, tb = cluster.publish(a), cluster.publish(b)
    api.wait_for_object(f"/api/v1/namespaces/{NS}/secrets/db", lambda s: len(s["metadata"]["ownerReferences"]) == 2,
                        what="one owner per pod's status object")
    cluster.unpublish(a, ta)
    api.wait_gone(status_path(f"web-a-{NS}-app-secrets"))
    api.run_gc()
    secret = api.get(f"/api/v1/namespaces/{NS}/secrets/db")
    assert secret["data"]["password"]
    cluster.unpublish(b, tb)


def test_an_unmanaged_secret_is_left_untouched_with_an_event(cluster):
    api = cluster.api
    api.create(f"/api/v1/namespaces/{NS}/secrets", {"metadata": {"name": "db"}, "data": {"password": "b3JpZ2luYWw="}})
    before = api.get(f"/api/v1/namespaces/{NS}/secrets/db")
    api.create_spc("app-secrets", namespace=NS, secret_objects=[
        {"secretName": "db", "data": [{"objectName": "db-password", "key": "password"}]}])
    pod = cluster.pod("web-0")
    target = cluster.publish(pod)
    events = wait_for(lambda: [e for e in api.get(f"/api/v1/namespaces/{NS}/events")["items"] if e["reason"] == "SecretNotManaged"],
                      what="the SecretNotManaged event")
    assert events[0]["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert events[0]["source"]["component"] == "secrets-store-csi-driver"
    after = api.get(f"/api/v1/namespaces/{NS}/secrets/db")
    assert after == before
    cluster.unpublish(pod, target)


def test_a_class_created_after_the_pod_fails_then_kubelets_retry_succeeds(cluster, csi):
    pod = cluster.pod("late-0")
    with pytest.raises(grpc.RpcError) as e:
        cluster.publish(pod, spc="late-class")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION or e.value.code() == grpc.StatusCode.NOT_FOUND, e.value
    assert f'"late-class"' in e.value.details() and NS in e.value.details()
    cluster.api.create_spc("late-class", namespace=NS)
    target = cluster.publish(pod, spc="late-class")
    assert read_volume(target)["db-password"][1] == b"s3cr3t-db-value"
    cluster.unpublish(pod, target)


def test_deleting_the_pod_object_collects_its_status(cluster):
    api = cluster.api
    api.create_spc("app-secrets", namespace=NS)
    pod = cluster.pod("gone-0")
    cluster.publish(pod)
    name = f"gone-0-{NS}-app-secrets"
    api.wait_for_object(status_path(name))
    api.kubectl("delete", "pod", "gone-0", "-n", NS)
    api.run_gc()
    api.wait_gone(status_path(name))


def test_api_outage_keeps_volumes_working_and_catches_up(cluster):
    api = cluster.api
    api.create_spc("app-secrets", namespace=NS)
    before = cluster.pod("before-0")
    during = cluster.pod("during-0")
    wait_for(lambda: "SecretProviderClass cache synced" in cluster.driver.stderr(), what="cache sync")
    t_before = cluster.publish(before)
    api.wait_for_object(status_path(f"before-0-{NS}-app-secrets"))

    api.down(seconds=3600, mode="refuse")
    try:
        # A mounted volume keeps working (republish), and a new publish of a cached class works.
        cluster.publish(before)
        assert read_volume(t_before)["db-password"][1] == b"s3cr3t-db-value"
        t_during = cluster.publish(during)
        assert read_volume(t_during)["db-password"][1] == b"s3cr3t-db-value"
        # The class changes meanwhile (the watch must resume and catch up after).
    finally:
        api.up()
    # The status write queued during the outage lands afterwards.
    api.wait_for_object(status_path(f"during-0-{NS}-app-secrets"), timeout=60, what="the status write after the outage")
    # The watch resumes even when the history it would resume from is gone (410 → list again).
    api.compact()
    api.drop_watches()
    api.create_spc("after-outage", namespace=NS)
    late = cluster.pod("late-0")
    start = api.requests()["next"]
    wait_for(lambda: _publish_ok(cluster, late, "after-outage"), timeout=60, what="the new class through the resumed watch")
    assert driver_requests(api, start).get("get secretproviderclasses", 0) <= 1
    for p, t in ((before, t_before), (during, t_during)):
        cluster.unpublish(p, t)


def _publish_ok(cluster, pod, spc) -> bool:
    try:
        cluster.publish(pod, spc=spc)
        return True
    except grpc.RpcError:
        return False


def test_a_rotated_token_file_is_read_again(kube_api, workdir, start_driver, csi):
    """In a pod the driver reads the projected service-account token, which kubelet
    rotates: after the old token stops working, the driver reads the file again."""
    kube_api.ensure_namespace(NS)
    token = kube_api.add_token(DRIVER_USER, rules=DRIVER_RULES)
    sa = workdir / "serviceaccount"
    env = kube_api.in_cluster_files(sa, token)
    providers = workdir / "providers"
    providers.mkdir()
    provider = FakeProvider(providers / "fake.sock").start()
    try:
        # Point the driver at the test's service-account directory (a kubeconfig with tokenFile
        # is how the same code path is reached outside a pod).
        cfg = json.loads(Path(kube_api.kubeconfig).read_text())
        cfg["users"] = [{"name": "sa", "user": {"tokenFile": str(sa / "token")}}]
        cfg["contexts"][0]["context"]["user"] = "sa"
        kubeconfig = workdir / "sa-kubeconfig"
        kubeconfig.write_text(json.dumps(cfg))
        driver = start_driver("--kubeconfig", str(kubeconfig), "--provider-volume", str(providers),
                              "--additional-provider-volume-paths", "", nodeid="node-1")
        node = csi.grpc.NodeStub(driver.channel())
        kube_api.create_spc("app-secrets", namespace=NS)
        pod = kube_api.create_pod("tok-0", namespace=NS)
        target = target_path(workdir, pod["metadata"]["uid"])
        node.NodePublishVolume(publish_request(csi, target, namespace=NS, spc="app-secrets", pod="tok-0",
                                               pod_uid=pod["metadata"]["uid"]), timeout=30)
        kube_api.wait_for_object(status_path(f"tok-0-{NS}-app-secrets"))
        # kubelet rotates the token: the old one is refused from now on, the file has the new one.
        new = kube_api.rotate_token(token)
        (sa / "token").write_text(new)
        pod2 = kube_api.create_pod("tok-1", namespace=NS)
        target2 = target_path(workdir, pod2["metadata"]["uid"])
        node.NodePublishVolume(publish_request(csi, target2, namespace=NS, spc="app-secrets", pod="tok-1",
                                               pod_uid=pod2["metadata"]["uid"]), timeout=30)
        kube_api.wait_for_object(status_path(f"tok-1-{NS}-app-secrets"), timeout=30,
                                 what="a status write with the rotated token")
        assert new not in driver.stderr() and token not in driver.stderr()
    finally:
        provider.stop()
        unmount_everything_under(workdir)


def test_no_token_or_secret_in_logs_events_or_status(cluster):
    api = cluster.api
    api.create_spc("app-secrets", namespace=NS, parameters={"objects": "db-password"}, secret_objects=[
        {"secretName": "db", "data": [{"objectName": "db-password", "key": "password"}]}])
    pod = cluster.pod("leak-0")
    uid = pod["metadata"]["uid"]
    target = target_path(cluster.root, uid)
    sa_token = "eyJhbGciOiJSUzI1NiJ9.sa-token-for-leak-test.c2lnbmF0dXJl"
    tokens = {"api": {"token": sa_token, "expirationTimestamp": "2099-01-01T00:00:00Z"}}
    cluster.node.NodePublishVolume(publish_request(
        cluster.csi, target, spc="app-secrets", namespace=NS, pod="leak-0", pod_uid=uid, tokens=tokens,
        secrets={"nodePublishSecretRef-password": "node-publish-secret-value"}), timeout=30)
    api.wait_for_object(f"/api/v1/namespaces/{NS}/secrets/db")
    # A refresh that fails, echoing nothing but an error, records an event.
    cluster.provider.error_code = grpc.StatusCode.UNAVAILABLE
    time.sleep(0.3)
    cluster.node.NodePublishVolume(publish_request(
        cluster.csi, target, spc="app-secrets", namespace=NS, pod="leak-0", pod_uid=uid, tokens=tokens,
        secrets={"nodePublishSecretRef-password": "node-publish-secret-value"}), timeout=30)
    wait_for(lambda: any(e["reason"] == "MountRotationFailed" for e in api.get(f"/api/v1/namespaces/{NS}/events")["items"]),
             what="the MountRotationFailed event")
    cluster.provider.error_code = None
    secrets = [sa_token, "node-publish-secret-value", "s3cr3t-db-value", cluster.token]
    observed = {
        "driver log": cluster.driver.stderr() + cluster.driver.stdout(),
        "events": json.dumps(api.get(f"/api/v1/namespaces/{NS}/events")),
        "status objects": json.dumps(api.get(f"{GROUP}/namespaces/{NS}/secretproviderclasspodstatuses")),
    }
    for where, text in observed.items():
        for i, s in enumerate(secrets):
            assert s not in text, f"secret #{i} appears in the {where}"
    cluster.unpublish(pod, target)
