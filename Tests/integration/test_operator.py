"""The operator (secrets-store-csi-driver-operator, the real binary) against the
test API server: its cluster resource in, the driver's install out.

It runs with a token that has exactly the RBAC rules of the OLM bundle's CSV
(deploy/olm), so a request the CSV does not grant fails the scenario, and the
request log is checked against the same rules afterwards.

Environment: OPERATOR_BIN (default .build/debug/secrets-store-csi-driver-operator).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from kubeapi_fixture import wait_for
from support import REPO, require_executable

OLM = REPO / "deploy" / "olm"
CSV_PATH = OLM / "manifests" / "secrets-store-csi-driver-operator.clusterserviceversion.yaml"
OUR_CRD = OLM / "manifests" / "operator.secrets-store.csi.x-k8s.io_secretsstorecsidrivers.yaml"
NAME = "secrets-store.csi.k8s.io"
OURS = "/apis/operator.secrets-store.csi.x-k8s.io/v1alpha1/secretsstorecsidrivers"
OPENSHIFT = "/apis/operator.openshift.io/v1/clustercsidrivers"
MANAGED = "app.kubernetes.io/managed-by=secrets-store-csi-driver-operator"
IMAGE = "registry.example.com/test/driver:1.0"
WAIT = 30.0


def operator_bin() -> Path:
    p = Path(os.environ.get("OPERATOR_BIN") or REPO / ".build" / "debug" / "secrets-store-csi-driver-operator").resolve()
    return require_executable(p, "operator binary", "OPERATOR_BIN")


def csv() -> dict:
    return yaml.safe_load(CSV_PATH.read_text())


def csv_rules(namespace: str) -> list[dict]:
    """The CSV's RBAC as the test server's token rules: clusterPermissions
    cluster-wide, permissions in the operator's namespace only."""
    spec = csv()["spec"]["install"]["spec"]
    rules = [dict(r) for p in spec["clusterPermissions"] for r in p["rules"]]
    rules += [dict(r, namespaces=[namespace]) for p in spec["permissions"] for r in p["rules"]]
    return rules


def granted(rules: list[dict], verb: str, group: str, resource: str, name: str, namespace: str) -> bool:
    for r in rules:
        if "namespaces" in r and namespace not in r["namespaces"]:
            continue
        if verb not in r["verbs"] and "*" not in r["verbs"]:
            continue
        if group not in r["apiGroups"] and "*" not in r["apiGroups"]:
            continue
        if resource not in r["resources"] and "*" not in r["resources"]:
            continue
        if r.get("resourceNames") and name not in r["resourceNames"]:
            continue
        return True
    return False


class Operator:
    def __init__(self, api, workdir: Path, *args: str, namespace="kube-system"):
        self.api = api
        self.namespace = namespace
        self.rules = csv_rules(namespace)
        token = api.add_token(f"system:serviceaccount:{namespace}:secrets-store-csi-driver-operator", rules=self.rules)
        self.user = f"system:serviceaccount:{namespace}:secrets-store-csi-driver-operator"
        self.log_path = workdir / "operator.log"
        cmd = [str(operator_bin()), "--kubeconfig", str(api.kubeconfig_for(token, "operator")),
               "--driver-image", IMAGE, "--log-level", "debug", *args]
        env = dict(os.environ)
        if namespace and "--namespace" not in args:
            env["POD_NAMESPACE"] = namespace
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"), env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return -9
        return self.proc.returncode


@pytest.fixture
def start_operator(tmp_path):
    started: list[Operator] = []

    def start(api, *args, namespace="kube-system"):
        op = Operator(api, tmp_path, *args, namespace=namespace)
        started.append(op)
        return op

    yield start
    for op in started:
        code = op.stop()
        assert code == 0, f"the operator did not stop cleanly ({code}):\n{op.log()[-4000:]}"


def apply_our_crd(api):
    api.kubectl("apply", "-f", OUR_CRD)
    wait_for(lambda: api.request("GET", OURS)[0] == 200, WAIT, "the SecretsStoreCSIDriver CRD is served")


def create_cr(api, spec: dict, base=OURS, kind="SecretsStoreCSIDriver", api_version="operator.secrets-store.csi.x-k8s.io/v1alpha1"):
    return api.ok("POST", base, {"apiVersion": api_version, "kind": kind, "metadata": {"name": NAME}, "spec": spec})


def patch_cr(api, spec: dict, base=OURS):
    return api.ok("PATCH", f"{base}/{NAME}", {"spec": spec}, content_type="application/merge-patch+json")


def condition(obj, ctype):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return c
    return None


def wait_conditions(api, want: dict, base=OURS, what=None):
    """Waits until the cluster resource's conditions have the wanted statuses (and
    reasons, when given as (status, reason)) and observedGeneration is current."""
    def ok(obj):
        st = obj.get("status") or {}
        if st.get("observedGeneration") != obj["metadata"].get("generation"):
            return False
        for ctype, w in want.items():
            c = condition(obj, ctype)
            status, reason = w if isinstance(w, tuple) else (w, None)
            if not c or c["status"] != status or (reason and c["reason"] != reason):
                return False
            if not c.get("lastTransitionTime"):
                return False
        return True
    return api.wait_for_object(f"{base}/{NAME}", ok, timeout=WAIT, what=what or f"conditions {want}")


DS = "/apis/apps/v1/namespaces/{ns}/daemonsets/csi-secrets-store"


def expected_paths(ns, sync=False, openshift=False):
    paths = [
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/secretproviderclasses.secrets-store.csi.x-k8s.io",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io",
        "/apis/storage.k8s.io/v1/csidrivers/secrets-store.csi.k8s.io",
        f"/api/v1/namespaces/{ns}/serviceaccounts/secrets-store-csi-driver",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/secretproviderclasses-role",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/secretproviderclasses-rolebinding",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/secretproviderclasses-admin-role",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/secretproviderclasses-viewer-role",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/secretproviderclasspodstatuses-viewer-role",
        DS.format(ns=ns),
        f"/api/v1/namespaces/{ns}/services/csi-secrets-store-metrics",
    ]
    if sync:
        paths += ["/apis/rbac.authorization.k8s.io/v1/clusterroles/secretprovidersyncing-role",
                  "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/secretprovidersyncing-rolebinding"]
    if openshift:
        paths += ["/apis/security.openshift.io/v1/securitycontextconstraints/secrets-store-csi-driver",
                  "/apis/rbac.authorization.k8s.io/v1/clusterroles/secrets-store-csi-driver-scc",
                  "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/secrets-store-csi-driver-scc"]
    return paths


def driver_container(ds):
    return next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "secrets-store")


def mark_ready(api, ns, nodes=3):
    """What the DaemonSet controller does once every pod is updated and ready."""
    path = DS.format(ns=ns)
    for _ in range(5):
        ds = api.get(path)
        ds["status"] = {"currentNumberScheduled": nodes, "desiredNumberScheduled": nodes, "numberReady": nodes,
                        "numberAvailable": nodes, "updatedNumberScheduled": nodes, "numberMisscheduled": 0,
                        "observedGeneration": ds["metadata"]["generation"]}
        code, _ = api.request("PUT", path + "/status", ds)
        if code == 200:
            return
    raise AssertionError("could not write the DaemonSet's status")


def operator_requests(api, user):
    return [r for r in api.requests()["requests"] if r.get("user") == user and r.get("verb") not in ("", "discovery")]


def test_install_roll_heal_conditions_and_remove(kube_api_factory, start_operator):
    api = kube_api_factory(preload=())
    apply_our_crd(api)
    ns = "kube-system"
    # Objects the operator did not create, with the driver's neighbours' kinds: they must survive Removed.
    api.ok("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "unrelated"}})
    api.ok("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles",
           {"metadata": {"name": "unrelated-role", "labels": {"app.kubernetes.io/part-of": "secrets-store-csi-driver"}}, "rules": []})
    op = start_operator(api, "--resource-kind", "SecretsStoreCSIDriver")
    cr = create_cr(api, {"managementState": "Managed"})
    uid = cr["metadata"]["uid"]

    # Every object appears, labelled, owned (CRDs: labelled, not owned), with the right content.
    for path in expected_paths(ns):
        obj = api.wait_for_object(path, timeout=WAIT)
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "secrets-store-csi-driver-operator", path
        refs = obj["metadata"].get("ownerReferences") or []
        if "customresourcedefinitions" in path:
            assert refs == [], path
        else:
            assert [r["uid"] for r in refs] == [uid], path
    ds = api.get(DS.format(ns=ns))
    c = driver_container(ds)
    assert c["image"] == IMAGE
    assert "--enable-secret-rotation=false" in c["args"] and "-v=2" in c["args"]
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    binding = api.get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/secretproviderclasses-rolebinding")
    assert binding["subjects"][0]["namespace"] == ns
    assert "tokenRequests" not in api.get("/apis/storage.k8s.io/v1/csidrivers/secrets-store.csi.k8s.io")["spec"]
    assert api.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/secretprovidersyncing-role")[0] == 404

    # Progressing until the DaemonSet controller reports every pod ready, then Available.
    wait_conditions(api, {"Available": ("False", "Deploying"), "Progressing": "True", "Degraded": "False"})
    mark_ready(api, ns)
    wait_conditions(api, {"Available": ("True", "AsExpected"), "Progressing": "False", "Degraded": "False"})

    # A spec change rolls the DaemonSet (new template) and reaches the CSIDriver and RBAC.
    generation = api.get(DS.format(ns=ns))["metadata"]["generation"]
    since = api.requests()["next"]
    patch_cr(api, {"logLevel": "Debug", "rotation": {"enabled": True, "pollInterval": "30s"}, "syncSecret": {"enabled": True},
                   "tokenRequests": [{"audience": "sts.amazonaws.com"}],
                   "nodeSelector": {"role": "secrets"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}]})
    ds = api.wait_for_object(DS.format(ns=ns), lambda o: "-v=4" in driver_container(o)["args"], timeout=WAIT)
    c = driver_container(ds)
    assert "--enable-secret-rotation=true" in c["args"] and "--rotation-poll-interval=30s" in c["args"]
    assert "--enable-secret-rotation=false" not in c["args"]
    assert ds["metadata"]["generation"] > generation
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux", "role": "secrets"}
    assert ds["spec"]["template"]["spec"]["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    api.wait_for_object("/apis/storage.k8s.io/v1/csidrivers/secrets-store.csi.k8s.io",
                        lambda o: o["spec"].get("tokenRequests") == [{"audience": "sts.amazonaws.com"}], timeout=WAIT)
    api.wait_for_object("/apis/rbac.authorization.k8s.io/v1/clusterroles/secretprovidersyncing-role", timeout=WAIT)
    api.wait_for_object("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/secretprovidersyncing-rolebinding", timeout=WAIT)
    reqs = api.requests(since)["requests"]
    t_patch = next(r["time"] for r in reqs if r["verb"] == "patch" and r["resource"] == "secretsstorecsidrivers" and r["subresource"] == "")
    t_ds = next(r["time"] for r in reqs if r["verb"] == "update" and r["resource"] == "daemonsets" and r["user"] == op.user)
    # The rollout is not done until the controller says so.
    wait_conditions(api, {"Available": "False", "Progressing": "True"})
    mark_ready(api, ns)
    wait_conditions(api, {"Available": "True", "Progressing": "False"})

    # Turning sync off removes its RBAC again.
    patch_cr(api, {"syncSecret": {"enabled": False}})
    api.wait_gone("/apis/rbac.authorization.k8s.io/v1/clusterroles/secretprovidersyncing-role", timeout=WAIT)
    api.wait_gone("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/secretprovidersyncing-rolebinding", timeout=WAIT)

    # Drift: a deleted DaemonSet comes back; an edited one is put back.
    old_uid = api.get(DS.format(ns=ns))["metadata"]["uid"]
    api.ok("DELETE", DS.format(ns=ns))
    api.wait_for_object(DS.format(ns=ns), lambda o: o["metadata"]["uid"] != old_uid, timeout=WAIT, what="the DaemonSet is back")
    ds = api.get(DS.format(ns=ns))
    driver_container(ds)["image"] = "example.com/someone-else:latest"
    api.ok("PUT", DS.format(ns=ns), ds)
    api.wait_for_object(DS.format(ns=ns), lambda o: driver_container(o)["image"] == IMAGE, timeout=WAIT, what="the image is put back")
    api.ok("DELETE", "/apis/storage.k8s.io/v1/csidrivers/secrets-store.csi.k8s.io")
    api.wait_for_object("/apis/storage.k8s.io/v1/csidrivers/secrets-store.csi.k8s.io", timeout=WAIT, what="the CSIDriver is back")

    rss = op.rss_kib()

    # Removed: everything it created goes, nothing else.
    patch_cr(api, {"managementState": "Removed"})
    for path in expected_paths(ns, sync=True):
        api.wait_gone(path, timeout=WAIT)
    wait_conditions(api, {"Available": ("False", "Removed"), "Progressing": "False", "Degraded": "False"})
    assert api.request("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/unrelated")[0] == 200
    assert api.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/unrelated-role")[0] == 200
    assert api.request("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")[0] == 200
    assert api.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin")[0] == 200

    # Every request the operator made is granted by the CSV (it ran with exactly those rules).
    mine = operator_requests(api, op.user)
    assert mine, "no requests from the operator in the log"
    denied = [r for r in mine if r["code"] in (401, 403)]
    assert not denied, denied
    for r in mine:
        res = r["resource"] + ("/" + r["subresource"] if r["subresource"] else "")
        assert granted(op.rules, r["verb"], r["group"], res, r["name"], r["namespace"]), r
    trail = [f"{round((r['time'] - t_patch) * 1000, 1)}ms {r['verb']} {r['resource']}{'/' + r['subresource'] if r['subresource'] else ''} {r['code']} {r.get('duration')}"
             for r in reqs if r.get("user") == op.user and t_patch <= r["time"] <= t_ds]
    numbers = {"spec_change_to_daemonset_update_ms": round((t_ds - t_patch) * 1000, 1), "operator_rss_kib": rss,
               "operator_requests_until_daemonset_update": trail,
               "requests": api.requests()["counts"]}
    (REPO / ".build" / "operator-numbers.json").write_text(json.dumps(numbers, indent=1))
    print("operator numbers:", json.dumps(numbers))


def test_bad_image_is_degraded_and_nothing_applied(kube_api_factory, start_operator):
    api = kube_api_factory(preload=())
    apply_our_crd(api)
    start_operator(api, "--resource-kind", "SecretsStoreCSIDriver")
    create_cr(api, {"managementState": "Managed", "image": "Not A/Valid Image!"})
    obj = wait_conditions(api, {"Degraded": ("True", "InvalidSpec"), "Progressing": "False", "Available": "False"})
    assert "spec.image" in condition(obj, "Degraded")["message"]
    for path in expected_paths("kube-system"):
        assert api.request("GET", path)[0] == 404, path
    # Fixed: applied, no longer degraded.
    patch_cr(api, {"image": "quay.io/example/driver:v2"})
    ds = api.wait_for_object(DS.format(ns="kube-system"), timeout=WAIT)
    assert driver_container(ds)["image"] == "quay.io/example/driver:v2"
    wait_conditions(api, {"Degraded": ("False", "AsExpected"), "Progressing": "True"})
    # A bad setting later changes nothing that runs.
    patch_cr(api, {"image": "quay.io/example/driver:"})
    wait_conditions(api, {"Degraded": ("True", "InvalidSpec")})
    assert driver_container(api.get(DS.format(ns="kube-system")))["image"] == "quay.io/example/driver:v2"


def test_unmanaged_leaves_everything_alone(kube_api_factory, start_operator):
    api = kube_api_factory(preload=())
    apply_our_crd(api)
    op = start_operator(api, "--resource-kind", "SecretsStoreCSIDriver")
    create_cr(api, {"managementState": "Managed"})
    api.wait_for_object(DS.format(ns="kube-system"), timeout=WAIT)
    patch_cr(api, {"managementState": "Unmanaged"})
    wait_conditions(api, {"Progressing": ("False", "Unmanaged"), "Degraded": ("False", "Unmanaged")})
    t_unmanaged = max(r["time"] for r in api.requests(0)["requests"])
    api.ok("DELETE", DS.format(ns="kube-system"))
    # The operator sees the deletion (its watch) and reconciles: it reads the resource again.
    since = api.requests()["next"]
    api.ok("PATCH", f"{OURS}/{NAME}", {"metadata": {"annotations": {"poke": "1"}}}, content_type="application/merge-patch+json")
    wait_for(lambda: any(r["verb"] == "get" and r["resource"] == "secretsstorecsidrivers" and r["user"] == op.user
                         for r in api.requests(since)["requests"]), WAIT, "a reconcile after the change")
    # ... and the next one too (the first might have been in flight already).
    since = api.requests()["next"]
    api.ok("PATCH", f"{OURS}/{NAME}", {"metadata": {"annotations": {"poke": "2"}}}, content_type="application/merge-patch+json")
    wait_for(lambda: any(r["verb"] == "get" and r["resource"] == "secretsstorecsidrivers" and r["user"] == op.user
                         for r in api.requests(since)["requests"]), WAIT, "a second reconcile")
    assert api.request("GET", DS.format(ns="kube-system"))[0] == 404
    assert not [r for r in api.requests(0)["requests"] if r.get("user") == op.user and r["verb"] in ("create", "update", "delete")
                and r["resource"] == "daemonsets" and r["time"] > t_unmanaged]


def test_crds_stay_while_secretproviderclasses_exist(kube_api_factory, start_operator):
    api = kube_api_factory(preload=())
    apply_our_crd(api)
    start_operator(api, "--resource-kind", "SecretsStoreCSIDriver", "--resync-interval", "1")
    create_cr(api, {"managementState": "Managed"})
    crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/secretproviderclasses.secrets-store.csi.x-k8s.io"
    api.wait_for_object(crd, timeout=WAIT)
    spc = "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/default/secretproviderclasses"
    wait_for(lambda: api.request("GET", spc)[0] == 200, WAIT, "SecretProviderClasses served")
    api.ok("POST", spc, {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
                         "metadata": {"name": "app"}, "spec": {"provider": "vault", "parameters": {"a": "b"}}})
    patch_cr(api, {"managementState": "Removed"})
    api.wait_gone(DS.format(ns="kube-system"), timeout=WAIT)
    obj = wait_conditions(api, {"Available": ("False", "Removed")})
    assert "SecretProviderClasses exist" in condition(obj, "Available")["message"]
    assert api.request("GET", crd)[0] == 200
    assert api.request("GET", spc + "/app")[0] == 200
    # The last class gone, the CRDs go (at the next resync).
    api.ok("DELETE", spc + "/app")
    api.wait_gone(crd, timeout=WAIT)


def test_openshift_clustercsidriver_detected_settings_in_overrides(kube_api_factory, start_operator):
    api = kube_api_factory(preload=("clustercsidriver",))
    ns = "openshift-cluster-csi-drivers"
    api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    # OpenShift's SCC API, as an open CRD (the test server has no security.openshift.io).
    api.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "securitycontextconstraints.security.openshift.io"},
        "spec": {"group": "security.openshift.io", "scope": "Cluster",
                 "names": {"kind": "SecurityContextConstraints", "plural": "securitycontextconstraints",
                           "singular": "securitycontextconstraints", "listKind": "SecurityContextConstraintsList"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
    wait_for(lambda: api.request("GET", "/apis/security.openshift.io/v1/securitycontextconstraints")[0] == 200, WAIT, "SCCs served")
    start_operator(api, namespace=ns)  # --resource-kind auto, namespace from POD_NAMESPACE
    create_cr(api, {"managementState": "Managed", "logLevel": "Trace",
                    "unsupportedConfigOverrides": {"rotation": {"enabled": True}}},
              base=OPENSHIFT, kind="ClusterCSIDriver", api_version="operator.openshift.io/v1")
    for path in expected_paths(ns, openshift=True):
        api.wait_for_object(path, timeout=WAIT)
    c = driver_container(api.get(DS.format(ns=ns)))
    assert "--enable-secret-rotation=true" in c["args"] and "-v=6" in c["args"]
    scc_binding = api.get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/secrets-store-csi-driver-scc")
    assert scc_binding["subjects"][0]["namespace"] == ns
    mark_ready(api, ns, nodes=2)
    wait_conditions(api, {"Available": "True", "Progressing": "False", "Degraded": "False"}, base=OPENSHIFT)
    patch_cr(api, {"managementState": "Removed"}, base=OPENSHIFT)
    for path in expected_paths(ns, openshift=True):
        api.wait_gone(path, timeout=WAIT)


# ---------------------------------------------------------------- the bundle


def bundle_objects():
    return [(p, yaml.safe_load(p.read_text())) for p in sorted((OLM / "manifests").glob("*.yaml"))]


def test_bundle_parses_and_references_resolve():
    annotations = yaml.safe_load((OLM / "metadata" / "annotations.yaml").read_text())["annotations"]
    assert annotations["operators.operatorframework.io.bundle.mediatype.v1"] == "registry+v1"
    for key in ("manifests", "metadata"):
        assert (OLM / annotations[f"operators.operatorframework.io.bundle.{key}.v1"]).is_dir()
    objs = bundle_objects()
    kinds = {o["kind"] for _, o in objs}
    assert kinds == {"ClusterServiceVersion", "CustomResourceDefinition"}
    c = csv()
    crds = {o["metadata"]["name"]: o for _, o in objs if o["kind"] == "CustomResourceDefinition"}
    for owned in c["spec"]["customresourcedefinitions"]["owned"]:
        crd = crds[owned["name"]]
        assert crd["spec"]["names"]["kind"] == owned["kind"]
        assert owned["version"] in [v["name"] for v in crd["spec"]["versions"]]
    modes = {m["type"]: m["supported"] for m in c["spec"]["installModes"]}
    assert modes == {"OwnNamespace": False, "SingleNamespace": False, "MultiNamespace": False, "AllNamespaces": True}
    assert c["metadata"]["annotations"]["operatorframework.io/suggested-namespace"] == "openshift-cluster-csi-drivers"
    spec = c["spec"]["install"]["spec"]
    accounts = {p["serviceAccountName"] for p in spec["clusterPermissions"] + spec["permissions"]}
    for d in spec["deployments"]:
        pod = d["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] in accounts
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        images = {i["image"] for i in c["spec"]["relatedImages"]}
        for ctr in pod["containers"]:
            assert ctr["image"] in images
    examples = json.loads(c["metadata"]["annotations"]["alm-examples"])
    assert all(e["metadata"]["name"] == NAME for e in examples)


def test_csv_grants_every_role_the_operator_creates():
    """RBAC forbids creating a role with permissions one does not hold, unless one may
    `escalate` (and `bind`) that role by name: every rule of every ClusterRole in the
    templates must be covered one way or the other."""
    rules = csv_rules("kube-system")
    roles = []
    for d in ("base", "components/sync-secret", "openshift"):
        for p in (REPO / "deploy" / d).glob("*.yaml"):
            o = yaml.safe_load(p.read_text())
            if o and o.get("kind") == "ClusterRole":
                roles.append(o)
    assert len(roles) >= 6
    for role in roles:
        name = role["metadata"]["name"]
        if granted(rules, "escalate", "rbac.authorization.k8s.io", "clusterroles", name, "") and \
                granted(rules, "bind", "rbac.authorization.k8s.io", "clusterroles", name, ""):
            continue
        for r in role["rules"]:
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    for v in r["verbs"]:
                        assert granted(rules, v, g, res, "", ""), (name, v, g, res)


def test_plain_manifests_agree_with_the_bundle():
    spec = csv()["spec"]["install"]["spec"]
    op = REPO / "deploy" / "operator"
    assert yaml.safe_load((op / "clusterrole.yaml").read_text())["rules"] == spec["clusterPermissions"][0]["rules"]
    assert yaml.safe_load((op / "role.yaml").read_text())["rules"] == spec["permissions"][0]["rules"]
    assert yaml.safe_load((op / "deployment.yaml").read_text())["spec"] == spec["deployments"][0]["spec"]
    assert (op / OUR_CRD.name).read_text() == OUR_CRD.read_text()


def test_kubectl_applies_the_bundle_and_the_plain_manifests(kube_api_factory):
    api = kube_api_factory(preload=("olm",))
    api.kubectl("create", "namespace", "openshift-cluster-csi-drivers")
    r = api.kubectl("apply", "-n", "openshift-cluster-csi-drivers", "-f", OLM / "manifests")
    assert "created" in r.stdout
    got = api.kubectl_json("get", "clusterserviceversions", "-n", "openshift-cluster-csi-drivers")
    assert [i["metadata"]["name"] for i in got["items"]] == ["secrets-store-csi-driver-operator.v0.1.0"]
    api.kubectl("apply", "-k", REPO / "deploy" / "operator")
    api.get("/apis/apps/v1/namespaces/kube-system/deployments/secrets-store-csi-driver-operator")
    api.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/secrets-store-csi-driver-operator")
    wait_for(lambda: api.request("GET", OURS)[0] == 200, WAIT, "the CRD is served")
    api.kubectl("apply", "-f", REPO / "deploy" / "operator" / "example" / "secretsstorecsidriver.yaml")
    assert api.get(f"{OURS}/{NAME}")["spec"]["managementState"] == "Managed"


def test_conflicts_and_server_errors_are_retried(kube_api_factory, start_operator):
    api = kube_api_factory(preload=())
    apply_our_crd(api)
    op = start_operator(api, "--resource-kind", "SecretsStoreCSIDriver")
    create_cr(api, {"managementState": "Managed"})
    api.wait_for_object(DS.format(ns="kube-system"), timeout=WAIT)
    wait_conditions(api, {"Degraded": "False", "Progressing": "True"})
    # Someone else writes the DaemonSet between our read and our write, twice: the update is retried.
    api.inject_conflicts("daemonsets", count=2, verbs=("update",))
    # And the API server fails the next CSIDriver reads: the pass fails, is Degraded, and retried with backoff.
    api.inject_fault("csidrivers", 500, count=3, verbs=("get",))
    patch_cr(api, {"logLevel": "TraceAll"})
    api.wait_for_object(DS.format(ns="kube-system"), lambda o: "-v=8" in driver_container(o)["args"], timeout=WAIT)
    wait_conditions(api, {"Degraded": ("False", "AsExpected")})
    mine = operator_requests(api, op.user)
    assert sum(1 for r in mine if r["verb"] == "update" and r["resource"] == "daemonsets" and r["code"] == 409) == 2
    assert sum(1 for r in mine if r["verb"] == "get" and r["resource"] == "csidrivers" and r["code"] == 500) == 3
    assert "reconcile failed; retrying" in op.log()


PLURALS = {"CustomResourceDefinition": ("apiextensions.k8s.io", "customresourcedefinitions"),
           "CSIDriver": ("storage.k8s.io", "csidrivers"), "ServiceAccount": ("", "serviceaccounts"),
           "Service": ("", "services"), "ClusterRole": ("rbac.authorization.k8s.io", "clusterroles"),
           "ClusterRoleBinding": ("rbac.authorization.k8s.io", "clusterrolebindings"),
           "DaemonSet": ("apps", "daemonsets"), "SecurityContextConstraints": ("security.openshift.io", "securitycontextconstraints")}


def test_csv_covers_every_template_object_by_name():
    """A file added to deploy/ without its name in the CSV would be a 403 in a cluster."""
    rules = csv_rules("some-namespace")
    count = 0
    for d in ("base", "components/sync-secret", "openshift"):
        for p in (REPO / "deploy" / d).glob("*.yaml"):
            o = yaml.safe_load(p.read_text())
            if not o or o.get("kind") in ("Kustomization", "Component"):
                continue
            group, plural = PLURALS[o["kind"]]
            ns = "some-namespace" if "namespace" in o["metadata"] else ""
            for verb in ("get", "list", "watch", "create", "update", "delete"):
                assert granted(rules, verb, group, plural, o["metadata"]["name"], ns), (p.name, verb)
            count += 1
    assert count >= 16


def test_deleting_the_cluster_resource_removes_the_driver_but_not_the_crds(kube_api_factory, start_operator):
    api = kube_api_factory(preload=())
    apply_our_crd(api)
    start_operator(api, "--resource-kind", "SecretsStoreCSIDriver")
    create_cr(api, {"managementState": "Managed"})
    for path in expected_paths("kube-system"):
        api.wait_for_object(path, timeout=WAIT)
    api.ok("DELETE", f"{OURS}/{NAME}")
    api.run_gc()
    for path in expected_paths("kube-system"):
        if "customresourcedefinitions" in path:
            continue
        api.wait_gone(path, timeout=WAIT)
    # Owned by nobody: the users' SecretProviderClasses are not the garbage collector's to take.
    for path in expected_paths("kube-system"):
        if "customresourcedefinitions" in path:
            assert api.request("GET", path)[0] == 200, path


def test_recovers_after_the_api_server_was_unreachable(kube_api_factory, start_operator):
    api = kube_api_factory(preload=())
    apply_our_crd(api)
    start_operator(api, "--resource-kind", "SecretsStoreCSIDriver")
    create_cr(api, {"managementState": "Managed"})
    api.wait_for_object(DS.format(ns="kube-system"), timeout=WAIT)
    # Connections refused and every watch reset; then the server is back and has forgotten
    # the watch history (410 for the old versions): the operator lists and watches again.
    api.down(seconds=3600, mode="refuse")
    time.sleep(0.5)  # lets the watches notice (not an assertion on timing)
    api.up()
    api.compact()
    api.ok("DELETE", DS.format(ns="kube-system"))
    api.wait_for_object(DS.format(ns="kube-system"), timeout=WAIT, what="the DaemonSet is back after the outage")
    patch_cr(api, {"logLevel": "Debug"})
    api.wait_for_object(DS.format(ns="kube-system"), lambda o: "-v=4" in driver_container(o)["args"], timeout=WAIT)


def test_stops_cleanly_while_a_retry_waits(kube_api_factory, start_operator):
    api = kube_api_factory(preload=())
    apply_our_crd(api)
    op = start_operator(api, "--resource-kind", "SecretsStoreCSIDriver")
    api.inject_fault("daemonsets", 500, count=-1, verbs=("create",))
    create_cr(api, {"managementState": "Managed"})
    obj = wait_conditions(api, {"Degraded": ("True", "ApplyFailed")})
    assert "DaemonSet" in condition(obj, "Degraded")["message"] or "500" in condition(obj, "Degraded")["message"]
    wait_for(lambda: "reconcile failed; retrying" in op.log(), WAIT, "a retry scheduled")
    # SIGTERM now: the backoff timer is cancelled and closed; exit 0 means no libuv handle leaked.
    assert op.stop() == 0, op.log()[-3000:]
