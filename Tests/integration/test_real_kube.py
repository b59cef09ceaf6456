"""The real control plane (real_kube.py): kubectl against it, CRDs, the real garbage collector,
watches, bookmarks, the request log, authentication and authorization. The tests that take the
`kube` fixture run against the real control plane and, when Tests/kubeapi/apiserver.py is in
the checkout, against the test API server too: the same body, the same helper interface.

Skips visibly when the binaries are not built (`make kube-control-plane`).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from real_kube import (SECRETS_STORE_CRDS, real_kube, real_kube_session, start_real_kube,  # noqa: F401
                       wait_for)

try:  # the test API server's fixture (Tests/kubeapi), where it is in the checkout
    from kubeapi_fixture import kube_api, kube_api_factory, kubeapi_tls_dir  # noqa: F401 (fixtures)
    HAVE_TEST_SERVER = True
except ImportError:
    HAVE_TEST_SERVER = False

# The real garbage collector notices a deleted owner within a second or two; a CRD created after
# the controller manager started is discovered on its 30-second resync. Both bounded generously
# because the machine may be busy.
GC_TIMEOUT = 60
GC_NEW_CRD_TIMEOUT = 120


@pytest.fixture(params=["real", "test-server"])
def kube(request):
    """The same test body against the real control plane and against the test API server."""
    if request.param == "real":
        return request.getfixturevalue("real_kube")
    if not HAVE_TEST_SERVER:
        pytest.skip("the test API server (Tests/integration/kubeapi_fixture.py) is not in this checkout")
    return request.getfixturevalue("kube_api")


def new_namespace(k) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    k.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def create_pod(k, ns, name="app") -> dict:
    return k.create(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}})


def owner_ref(obj: dict) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"]}


def gone(k, path) -> bool:
    code, _ = k.request("GET", path)
    return code == 404


# ------------------------------------------------------------------ kubectl


def test_kubectl_get_apply_delete(kube):
    ns = new_namespace(kube)
    manifest = f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {ns}
  labels: {{app: demo}}
data:
  mode: one
"""
    r = kube.kubectl("apply", "-f", "-", input=manifest)
    assert "configmap/settings created" in r.stdout
    cm = kube.kubectl_json("get", "configmap", "settings", "-n", ns)
    assert cm["data"] == {"mode": "one"}
    assert cm["metadata"]["uid"] and cm["metadata"]["resourceVersion"]

    r = kube.kubectl("apply", "-f", "-", input=manifest.replace("mode: one", "mode: two"))
    assert "configmap/settings configured" in r.stdout
    assert kube.kubectl_json("get", "configmap", "-n", ns, "-l", "app=demo")["items"][0]["data"] == {"mode": "two"}

    r = kube.kubectl("delete", "configmap", "settings", "-n", ns)
    assert 'configmap "settings" deleted' in r.stdout
    r = kube.kubectl("get", "configmap", "settings", "-n", ns, check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr


def test_api_status_errors(kube):
    ns = new_namespace(kube)
    code, body = kube.request("GET", f"/api/v1/namespaces/{ns}/secrets/missing")
    assert code == 404
    assert body["kind"] == "Status" and body["reason"] == "NotFound" and body["code"] == 404
    cm = kube.create(f"/api/v1/namespaces/{ns}/configmaps",
                     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}})
    code, body = kube.request("POST", f"/api/v1/namespaces/{ns}/configmaps",
                              {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert code == 409 and body["reason"] == "AlreadyExists"
    kube.ok("PATCH", f"/api/v1/namespaces/{ns}/configmaps/x", {"data": {"b": "2"}},
            content_type="application/merge-patch+json")
    stale = dict(cm, data={"a": "stale"})
    code, body = kube.request("PUT", f"/api/v1/namespaces/{ns}/configmaps/x", stale)
    assert code == 409 and body["reason"] == "Conflict"


# ------------------------------------------------------------------ CRDs and the garbage collector


def test_status_object_garbage_collected_with_its_pod(kube):
    """The secrets-store CRDs (deploy/base, preloaded): a SecretProviderClassPodStatus owned by
    a pod goes away when the pod is deleted, as the driver relies on."""
    if not all(c.exists() for c in SECRETS_STORE_CRDS):
        pytest.skip("deploy/base CRDs are not in this checkout")
    ns = new_namespace(kube)
    pod = create_pod(kube, ns)
    name = f"app-{ns}-vault"
    base = f"/apis/secrets-store.csi.x-k8s.io/v1/namespaces/{ns}/secretproviderclasspodstatuses"
    status = kube.create(base, {
        "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClassPodStatus",
        "metadata": {"name": name, "labels": {"internal.secrets-store.csi.k8s.io/node-name": "node-1"},
                     "ownerReferences": [owner_ref(pod)]},
        "status": {"podName": "app", "secretProviderClassName": "vault", "mounted": True,
                   "targetPath": "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/v/mount",
                   "objects": [{"id": "secret/db", "version": "3"}]}})
    assert status["status"]["objects"] == [{"id": "secret/db", "version": "3"}]
    out = kube.kubectl("get", "secretproviderclasspodstatus", name, "-n", ns, "-o", "yaml").stdout
    assert "secretProviderClassName: vault" in out and f"uid: {pod['metadata']['uid']}" in out

    # An object whose owner is still there stays.
    keeper_owner = kube.create(f"/api/v1/namespaces/{ns}/configmaps",
                               {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    keeper = kube.create(base, {
        "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClassPodStatus",
        "metadata": {"name": "keeper", "ownerReferences": [owner_ref(keeper_owner)]},
        "status": {"podName": "other", "secretProviderClassName": "vault", "mounted": True}})

    kube.ok("DELETE", f"/api/v1/namespaces/{ns}/pods/app")
    wait_for(lambda: gone(kube, f"{base}/{name}"), timeout=GC_TIMEOUT,
             what="the garbage collector to delete the status object of the deleted pod")
    assert kube.get(f"{base}/keeper")["metadata"]["uid"] == keeper["metadata"]["uid"]


def test_secret_provider_class_crd_served_as_v1_and_v1alpha1(kube):
    """deploy/base's SecretProviderClass CRD: accepted by the server, an object written as v1
    reads back as v1alpha1 (the driver reads both)."""
    if not all(c.exists() for c in SECRETS_STORE_CRDS):
        pytest.skip("deploy/base CRDs are not in this checkout")
    ns = new_namespace(kube)
    spc = {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
           "metadata": {"name": "vault"},
           "spec": {"provider": "vault", "parameters": {"objects": "- objectName: db\n"},
                    "secretObjects": [{"secretName": "db", "type": "Opaque",
                                       "data": [{"objectName": "db", "key": "password"}]}]}}
    kube.create(f"/apis/secrets-store.csi.x-k8s.io/v1/namespaces/{ns}/secretproviderclasses", spc)
    old = kube.get(f"/apis/secrets-store.csi.x-k8s.io/v1alpha1/namespaces/{ns}/secretproviderclasses/vault")
    assert old["apiVersion"] == "secrets-store.csi.x-k8s.io/v1alpha1"
    assert old["spec"]["secretObjects"] == spc["spec"]["secretObjects"]
    out = kube.kubectl("get", "secretproviderclasses", "-n", ns, "-o", "name").stdout.split()
    assert out == ["secretproviderclass.secrets-store.csi.x-k8s.io/vault"]


def test_crd_applied_at_runtime_and_its_dependents_collected(real_kube):
    """A CRD applied with kubectl after the controller manager started: the real garbage
    collector discovers it (on its 30 s resync) and collects a custom resource whose owner
    pod is deleted."""
    k = real_kube
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    crd = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: podstatuses.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: PodStatus, plural: podstatuses, singular: podstatus, listKind: PodStatusList}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            status:
              type: object
              properties:
                podName: {{type: string}}
                mounted: {{type: boolean}}
"""
    k.kubectl("apply", "-f", "-", input=crd)
    try:
        k.kubectl("wait", "--for=condition=Established", f"crd/podstatuses.{group}", "--timeout=30s", timeout=40)
        ns = k.namespace()
        pod = create_pod(k, ns)
        base = f"/apis/{group}/v1/namespaces/{ns}/podstatuses"
        k.create(base, {"apiVersion": f"{group}/v1", "kind": "PodStatus",
                        "metadata": {"name": "st", "ownerReferences": [owner_ref(pod)]},
                        "status": {"podName": "app", "mounted": True}})
        assert k.kubectl_json("get", f"podstatuses.{group}", "st", "-n", ns)["status"]["mounted"] is True
        t0 = time.monotonic()
        k.kubectl("delete", "pod", "app", "-n", ns, "--wait=false")
        wait_for(lambda: gone(k, f"{base}/st"), timeout=GC_NEW_CRD_TIMEOUT,
                 what="the garbage collector to collect the custom resource", interval=0.5)
        print(f"custom resource collected {time.monotonic() - t0:.1f}s after its pod was deleted")
    finally:
        k.kubectl("delete", "crd", f"podstatuses.{group}", "--wait=false", check=False)


def test_secret_with_two_owners_stays_until_the_last_is_gone(kube):
    """Secret sync's rule: one owner reference per status object; the Secret stays while any
    owner is left."""
    ns = new_namespace(kube)
    owners = [kube.create(f"/api/v1/namespaces/{ns}/configmaps",
                          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"owner-{i}"}})
              for i in range(2)]
    kube.create(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "synced",
                                                           "ownerReferences": [owner_ref(o) for o in owners]},
        "type": "Opaque", "data": {"k": "dg=="}})
    kube.ok("DELETE", f"/api/v1/namespaces/{ns}/configmaps/owner-0")

    def owners_left():
        code, s = kube.request("GET", f"/api/v1/namespaces/{ns}/secrets/synced")
        assert code == 200, "the Secret was deleted while an owner remained"
        return [o["name"] for o in s["metadata"].get("ownerReferences", [])] == ["owner-1"] or None

    # The garbage collector removes the dangling reference (real) or keeps it (test server may);
    # either way the Secret must survive: wait a little, then require it.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not owners_left():
        time.sleep(0.2)
    assert kube.get(f"/api/v1/namespaces/{ns}/secrets/synced")["data"] == {"k": "dg=="}
    kube.ok("DELETE", f"/api/v1/namespaces/{ns}/configmaps/owner-1")
    wait_for(lambda: gone(kube, f"/api/v1/namespaces/{ns}/secrets/synced"), timeout=GC_TIMEOUT,
             what="the garbage collector to delete the Secret after its last owner")


# ------------------------------------------------------------------ watches


def test_watch_from_resource_version(kube):
    ns = new_namespace(kube)
    base = f"/api/v1/namespaces/{ns}/configmaps"
    mine = {"test": "watch"}  # newer servers put kube-root-ca.crt in every namespace
    kube.create(base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "before", "labels": mine}})
    listed = kube.get(base, query={"labelSelector": "test=watch"})
    rv = listed["metadata"]["resourceVersion"]
    assert [i["metadata"]["name"] for i in listed["items"]] == ["before"]

    # Changes made after the list but before the watch starts are not lost.
    kube.create(base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": mine},
                       "data": {"v": "1"}})
    w = kube.watch(base, resourceVersion=rv, allowWatchBookmarks="true", timeoutSeconds="60",
                   labelSelector="test=watch")
    assert w.status == 200
    ev = w.next()
    assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "a")
    kube.ok("PATCH", f"{base}/a", {"data": {"v": "2"}}, content_type="application/merge-patch+json")
    ev = w.next()
    assert ev["type"] == "MODIFIED" and ev["object"]["data"] == {"v": "2"}
    kube.ok("DELETE", f"{base}/a")
    ev = w.next()
    assert (ev["type"], ev["object"]["metadata"]["name"]) == ("DELETED", "a")
    w.close()


def test_watch_bookmark_after_progress_elsewhere(kube):
    """Bookmarks carry the store's progress to a watcher whose own objects are quiet. The real
    kube-apiserver (1.20) sends one about 2 s before the watch's timeoutSeconds deadline (every
    minute without a deadline), and only when the resource's resourceVersion moved past what the
    watcher last saw: here a write in another namespace."""
    ns, other = new_namespace(kube), new_namespace(kube)
    base = f"/api/v1/namespaces/{ns}/configmaps"
    kube.create(base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "quiet", "labels": {"test": "bm"}}})
    rv = kube.get(base, query={"labelSelector": "test=bm"})["metadata"]["resourceVersion"]
    w = kube.watch(base, resourceVersion=rv, allowWatchBookmarks="true", timeoutSeconds="6", labelSelector="test=bm")
    elsewhere = kube.create(f"/api/v1/namespaces/{other}/configmaps",
                            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "busy"}})
    ev = w.next(timeout=15, skip_bookmarks=False)
    assert ev["type"] == "BOOKMARK", ev
    assert ev["object"]["kind"] == "ConfigMap"
    assert int(ev["object"]["metadata"]["resourceVersion"]) >= int(elsewhere["metadata"]["resourceVersion"])
    w.close()


def test_kubectl_get_watch(kube):
    ns = new_namespace(kube)
    p = kube.kubectl("get", "configmaps", "-n", ns, "-l", "test=watch", "-w", "-o", "name", background=True)
    try:
        time.sleep(1.5)  # kubectl lists, then watches from the list's resourceVersion
        kube.create(f"/api/v1/namespaces/{ns}/configmaps",
                    {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "watched", "labels": {"test": "watch"}}})
        line = p.stdout.readline()
        assert line.strip() == "configmap/watched", line + (p.stderr.read() if p.poll() is not None else "")
    finally:
        p.kill()


# ------------------------------------------------------------------ authentication and authorization


def test_tokens_401_403_and_rbac(real_kube):
    k = real_kube
    ns = k.namespace()
    path = f"/api/v1/namespaces/{ns}/configmaps"
    assert k.request("GET", path, token="not-a-token")[0] == 401
    code, body = k.request("GET", path, token=k.limited_token)
    assert code == 403 and body["reason"] == "Forbidden"
    k.grant("limited", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}], namespace=ns)
    wait_for(lambda: k.request("GET", path, token=k.limited_token)[0] == 200, timeout=10,
             what="the RBAC grant to take effect")
    assert k.request("POST", path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
                     token=k.limited_token)[0] == 403
    limited_cfg = k.kubeconfig_for(k.limited_token, "limited")
    r = k.kubectl("get", "configmaps", "-n", ns, kubeconfig=limited_cfg)
    assert r.returncode == 0
    r = k.kubectl("get", "secrets", "-n", ns, kubeconfig=limited_cfg, check=False)
    assert r.returncode != 0 and "Forbidden" in r.stderr


def test_token_request_for_a_service_account(real_kube):
    """TokenRequest works (--service-account-issuer and signing key): the token authenticates
    as the service account, with the rules bound to it."""
    k = real_kube
    ns = k.namespace()
    token = k.add_service_account_token(ns, "csi-driver", rules=[
        {"apiGroups": ["secrets-store.csi.x-k8s.io"], "resources": ["secretproviderclasses"],
         "verbs": ["get", "list", "watch"]}], expiration_seconds=600)
    assert token.count(".") == 2  # a JWT
    r = k.create("/apis/authentication.k8s.io/v1/tokenreviews",
                 {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
    assert r["status"]["authenticated"] is True
    assert r["status"]["user"]["username"] == f"system:serviceaccount:{ns}:csi-driver"
    wait_for(lambda: k.request("GET", f"/apis/secrets-store.csi.x-k8s.io/v1/namespaces/{ns}/secretproviderclasses",
                               token=token)[0] == 200, timeout=10, what="the service account's grant")
    assert k.request("GET", f"/api/v1/namespaces/{ns}/secrets", token=token)[0] == 403


def test_request_log(kube):
    """requests(): what the server was asked, by whom, with what answer (the test API server's
    request log; the real server's audit log)."""
    ns = new_namespace(kube)
    kube.clear_requests()
    kube.create(f"/api/v1/namespaces/{ns}/configmaps",
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "counted"}})
    kube.request("GET", f"/api/v1/namespaces/{ns}/configmaps/counted")
    kube.request("GET", f"/api/v1/namespaces/{ns}/configmaps/missing")

    def mine():
        rs = [r for r in kube.requests()["requests"] if r["namespace"] == ns and r["resource"] == "configmaps"]
        return rs if len(rs) >= 3 else None

    rs = wait_for(mine, timeout=5, what="three logged requests")
    # (a create's name is in its body: the real server's audit log leaves it out)
    assert [(r["method"], r["verb"], r["code"]) for r in rs] == [("POST", "create", 201), ("GET", "get", 200),
                                                                 ("GET", "get", 404)]
    assert [r["name"] for r in rs[1:]] == ["counted", "missing"]
    assert kube.requests()["counts"].get("get configmaps", 0) >= 2


# ------------------------------------------------------------------ the fixture itself


def test_control_plane_starts_and_stops_cleanly(real_kube_session, tmp_path_factory):
    """A second control plane next to the session's: it starts, serves, and leaves no process
    and no directory behind. Reports the startup time and the memory."""
    state = Path(tmp_path_factory.mktemp("rk")) / "state"
    k = start_real_kube(state)
    try:
        pids = {name: p.pid for name, p in k.procs.items()}
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
        assert k.kubectl("get", "namespaces", "-o", "name").stdout.split() >= ["namespace/default"]
        ver = k.get("/version")
        assert ver["gitVersion"] == "v1.20.2", ver
        rss = k.rss()
        print(f"\nstartup {k.startup_seconds:.1f}s; RSS " +
              ", ".join(f"{n} {v / 2**20:.0f} MiB" for n, v in sorted(rss.items())))
    finally:
        k.stop()
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", f"{name} ({pid}) still running"
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert str(state) not in out, "a process still refers to the stopped control plane's directory"
