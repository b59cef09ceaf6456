"""Cluster mode against a REAL kube-apiserver and kube-controller-manager (v1.20, built
from Debian's source by `make kube-control-plane`): the same driver binary, its real
garbage collector, real RBAC. Skipped, with the reason shown, where the binaries are not
built; the test API server's suite (test_cluster_mode.py) covers the same ground and the
faults a real server cannot be made to produce."""

from __future__ import annotations

import base64
import time

import pytest

from fake_provider import FakeProvider
from mounting import publish_request, read_volume, target_path, unmount_everything_under, unpublish_request
from real_kube import real_kube, real_kube_session, wait_for  # noqa: F401 (fixtures)
from test_cluster_mode import DRIVER_RULES, DRIVER_USER

GROUP = "/apis/secrets-store.csi.x-k8s.io/v1"


class RealCluster:
    def __init__(self, kube, workdir, start_driver, csi):
        self.kube = kube
        self.csi = csi
        self.root = workdir
        self.ns = kube.namespace("sscd")
        providers = workdir / "providers"
        providers.mkdir()
        self.provider = FakeProvider(providers / "fake.sock").start()
        self.provider.files = [("db-password", 0o644, b"s3cr3t-db-value")]
        self.provider.object_versions = [("db-password", "v1")]
        # The driver as its service account, with deploy/'s rules bound cluster-wide (real RBAC).
        kube.grant("kube-system:secrets-store-csi-driver", DRIVER_RULES, kind="ServiceAccount")
        token = kube.add_service_account_token("kube-system", "secrets-store-csi-driver")
        self.driver = start_driver(
            "--kubeconfig", str(kube.kubeconfig_for(token, "driver")), "--provider-volume", str(providers),
            "--additional-provider-volume-paths", "", "--enable-secret-rotation", "--rotation-poll-interval", "200ms",
            nodeid="node-1")
        self.node = csi.grpc.NodeStub(self.driver.channel())
        wait_for(lambda: "SecretProviderClass cache synced" in self.driver.stderr(), timeout=30, what="cache sync")

    def pod(self, name):
        return self.kube.create(f"/api/v1/namespaces/{self.ns}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "registry.example/app:1"}]}})

    def spc(self, name, secret_objects=None):
        spec = {"provider": "fake", "parameters": {"objects": "db-password"}}
        if secret_objects:
            spec["secretObjects"] = secret_objects
        self.kube.create(f"{GROUP}/namespaces/{self.ns}/secretproviderclasses", {
            "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass", "metadata": {"name": name},
            "spec": spec})

    def publish(self, pod, spc="app"):
        uid = pod["metadata"]["uid"]
        target = target_path(self.root, uid)
        self.node.NodePublishVolume(publish_request(
            self.csi, target, spc=spc, namespace=self.ns, pod=pod["metadata"]["name"], pod_uid=uid), timeout=60)
        return target

    def unpublish(self, pod, target):
        self.node.NodeUnpublishVolume(unpublish_request(self.csi, target, pod_uid=pod["metadata"]["uid"]), timeout=60)

    def wait_object(self, path, cond=lambda o: True, timeout=60, what="object"):
        def probe():
            code, obj = self.kube.request("GET", path)
            return obj if code == 200 and cond(obj) else None
        return wait_for(probe, timeout=timeout, what=what)

    def wait_gone(self, path, timeout=90):
        wait_for(lambda: self.kube.request("GET", path)[0] == 404, timeout=timeout, what=f"{path} gone")


@pytest.fixture
def real(real_kube, workdir, start_driver, csi):
    c = RealCluster(real_kube, workdir, start_driver, csi)
    try:
        yield c
    finally:
        c.provider.stop()
        unmount_everything_under(workdir)


def test_status_object_lifecycle_and_the_real_garbage_collector(real):
    real.spc("app")
    pod = real.pod("web-0")
    start = real.kube.requests()["next"]
    target = real.publish(pod)
    assert read_volume(target)["db-password"][1] == b"s3cr3t-db-value"
    path = f"{GROUP}/namespaces/{real.ns}/secretproviderclasspodstatuses/web-0-{real.ns}-app"
    obj = real.wait_object(path, what="the status object")
    assert obj["status"]["objects"] == [{"id": "db-password", "version": "v1"}]
    assert obj["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    shown = real.kube.kubectl_json("get", "secretproviderclasspodstatus", f"web-0-{real.ns}-app", "-n", real.ns)
    assert shown["status"]["targetPath"] == target
    time.sleep(0.5)
    driver_calls = [r for r in real.kube.requests(since=start)["requests"] if r.get("user") == DRIVER_USER]
    assert not [r for r in driver_calls if r["verb"] == "get" and r["resource"] == "secretproviderclasses"], driver_calls
    # Deleting the pod object: the real garbage collector removes its status object.
    real.kube.kubectl("delete", "pod", "web-0", "-n", real.ns, "--grace-period=0", "--force")
    real.wait_gone(path)
    real.unpublish(pod, target)


def test_synced_secret_shared_by_two_pods_follows_its_owners(real):
    real.spc("app", secret_objects=[{"secretName": "db", "data": [{"objectName": "db-password", "key": "password"}]}])
    # The Secret writes need the sync RBAC, as deploy/components/sync-secret grants it.
    real.kube.grant("kube-system:secrets-store-csi-driver", [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}],
        kind="ServiceAccount")
    a, b = real.pod("web-a"), real.pod("web-b")
    ta, tb = real.publish(a), real.publish(b)
    secret_path = f"/api/v1/namespaces/{real.ns}/secrets/db"
    secret = real.wait_object(secret_path, lambda s: len(s["metadata"].get("ownerReferences", [])) == 2,
                              what="the Secret owned by both status objects")
    assert base64.b64decode(secret["data"]["password"]) == b"s3cr3t-db-value"
    real.unpublish(a, ta)
    # The remaining pod still needs it: the real collector keeps it and drops the dangling owner.
    real.wait_object(secret_path, lambda s: len(s["metadata"].get("ownerReferences", [])) == 1, timeout=90,
                     what="the dangling owner reference removed")
    real.unpublish(b, tb)
    real.wait_gone(secret_path)
