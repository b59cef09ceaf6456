"""deploy/: the manifests, the kustomize overlays, the Helm chart and the CRD schemas.

Uses the real `helm` and `kubectl` (`make deps` puts them in .venv/bin; HELM and
KUBECTL override). Without helm the chart tests are skipped with that reason;
everything else fails rather than skips. The driver binary (DRIVER_BIN) checks
that every argument the DaemonSet passes is one the driver accepts.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import REPO, run_cmd

try:
    import jsonschema
except ImportError:  # `make deps` installs it; say so instead of an import error
    jsonschema = None

DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
CHART = DEPLOY / "charts" / "secrets-store-csi-driver"
UPSTREAM_VALUES = CHART / "ci" / "upstream-values.yaml"
DOCS = REPO / "docs"
DRIVER_CONTAINER = "secrets-store"
SPC_CRD = "secrets-store.csi.x-k8s.io_secretproviderclasses.yaml"
SPCPS_CRD = "secrets-store.csi.x-k8s.io_secretproviderclasspodstatuses.yaml"


def _tool(name: str, env: str) -> str | None:
    p = os.environ.get(env) or str(REPO / ".venv" / "bin" / name)
    if Path(p).is_file() and os.access(p, os.X_OK):
        return p
    return shutil.which(name)


HELM = _tool("helm", "HELM")
KUBECTL = _tool("kubectl", "KUBECTL")
needs_helm = pytest.mark.skipif(HELM is None, reason="helm not found (make deps installs it into .venv/bin; HELM overrides)")


def _run(args: list[str]) -> str:
    r = run_cmd(args, timeout=60)
    assert r.returncode == 0, f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def helm_template(*args: str) -> list[dict]:
    return _docs(_run([HELM, "template", "sscd", str(CHART), "--namespace", "kube-system", *args]))


def kustomize(path: Path) -> list[dict]:
    if KUBECTL is None:
        pytest.fail("kubectl not found (make deps installs it into .venv/bin; KUBECTL overrides)", pytrace=False)
    return _docs(_run([KUBECTL, "kustomize", str(path)]))


def one(objs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(ds: dict, name: str) -> dict:
    cs = [c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    assert len(cs) == 1, f"DaemonSet has no single container {name}"
    return cs[0]


# Every way of installing, rendered: (id, function returning the objects).
RENDERINGS = {
    "kustomize-deploy": lambda: kustomize(DEPLOY),
    "kustomize-openshift": lambda: kustomize(DEPLOY / "openshift"),
    "kustomize-sync-secret": lambda: kustomize(DEPLOY / "overlays" / "sync-secret"),
    "helm-defaults": lambda: helm_template(),
    "helm-upstream-values": lambda: helm_template("-f", str(UPSTREAM_VALUES), "--kube-version", "1.35.0"),
    # An upstream user who cleared the list (upstream's chart then passes an empty value).
    "helm-no-additional-provider-dirs": lambda: helm_template("--set", "linux.additionalProvidersDirs=null"),
}


@pytest.fixture(params=sorted(RENDERINGS), scope="module")
def rendered(request) -> list[dict]:
    if request.param.startswith("helm") and HELM is None:
        pytest.skip("helm not found (make deps installs it into .venv/bin; HELM overrides)")
    return RENDERINGS[request.param]()


# --------------------------------------------------------------------------
# Everything parses


def test_every_file_in_deploy_parses_as_kubernetes_objects():
    files = [p for p in DEPLOY.rglob("*.yaml") if "templates" not in p.parts]
    assert len(files) >= 15, f"deploy/ looks incomplete: {files}"
    for path in files:
        docs = _docs(path.read_text())
        assert docs, f"{path} is empty"
        if path.parent == CHART / "ci" or path.name in ("values.yaml", "Chart.yaml"):
            continue
        if path == DEPLOY / "olm" / "metadata" / "annotations.yaml":
            continue  # OLM bundle metadata, not an object (test_operator.py checks it)
        for d in docs:
            assert isinstance(d, dict) and d.get("apiVersion") and d.get("kind"), f"{path}: not an object: {d!r}"


def test_rendered_objects_are_well_formed(rendered):
    assert rendered
    for o in rendered:
        assert o.get("apiVersion") and o.get("kind") and o.get("metadata", {}).get("name"), o
    kinds = {o["kind"] for o in rendered}
    for kind in ("CSIDriver", "DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
        assert kind in kinds, f"no {kind} rendered"


@needs_helm
@pytest.mark.parametrize("values", [None, UPSTREAM_VALUES], ids=["defaults", "upstream-values"])
def test_helm_lint(values):
    args = [HELM, "lint", "--strict", str(CHART)]
    if values:
        args += ["-f", str(values)]
    _run(args)


# --------------------------------------------------------------------------
# The DaemonSet


def _driver_args(ds: dict) -> list[str]:
    return container(ds, DRIVER_CONTAINER)["args"]


def test_every_driver_flag_is_in_the_drivers_help(rendered, driver_path):
    help_text = _run([str(driver_path), "--help"])
    missing = []
    for arg in _driver_args(one(rendered, "DaemonSet")):
        name = arg.split("=", 1)[0]
        if name in ("-v", "--v"):  # klog verbosity, documented under --log-level
            if "-v=N" not in help_text:
                missing.append(name)
        elif not re.search(rf"(^|\s){re.escape(name)}(\s|$|=)", help_text, re.M):
            missing.append(name)
    assert not missing, f"the DaemonSet passes flags the driver's --help does not list: {missing}"


def test_the_driver_accepts_the_daemonsets_arguments(rendered, driver_path):
    """The exact argument list (env references filled in as kubelet does) parses:
    `--version` after it stops the driver before it starts serving."""
    args = []
    for a in _driver_args(one(rendered, "DaemonSet")):
        args.append(a.replace("$(CSI_ENDPOINT)", "unix:///tmp/sscd-deploy-test.sock").replace("$(KUBE_NODE_NAME)", "node-1"))
    r = run_cmd([str(driver_path), *args, "--version"])
    assert r.returncode == 0, f"the driver rejects the DaemonSet's arguments {args}:\n{r.stderr}"


def test_every_volume_mount_names_a_volume(rendered):
    ds = one(rendered, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    volumes = [v["name"] for v in spec["volumes"]]
    assert len(volumes) == len(set(volumes)), f"duplicate volume names: {volumes}"
    for c in spec["containers"]:
        mounts = [m["name"] for m in c.get("volumeMounts", [])]
        assert mounts, f"container {c['name']} mounts nothing"
        for m in mounts:
            assert m in volumes, f"container {c['name']} mounts {m}, which is not a volume of the pod"
        paths = [m["mountPath"] for m in c.get("volumeMounts", [])]
        assert len(paths) == len(set(paths)), f"container {c['name']} mounts two volumes at one path: {paths}"


def test_driver_container_shape(rendered):
    ds = one(rendered, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["node-driver-registrar", DRIVER_CONTAINER, "liveness-probe"]
    assert spec["serviceAccountName"] == "secrets-store-csi-driver"
    assert spec["nodeSelector"]["kubernetes.io/os"] == "linux"
    assert {"operator": "Exists"} in spec["tolerations"] or any(
        t.get("operator") for t in spec["tolerations"]), spec["tolerations"]
    driver = container(ds, DRIVER_CONTAINER)
    assert driver["securityContext"]["privileged"] is True
    env = {e["name"]: e for e in driver["env"]}
    assert env["CSI_ENDPOINT"]["value"] == "unix:///csi/csi.sock"
    assert env["KUBE_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    args = driver["args"]
    for prefix in ("--endpoint=$(CSI_ENDPOINT)", "--nodeid=$(KUBE_NODE_NAME)", "--provider-volume=",
                   "--additional-provider-volume-paths=", "--metrics-addr="):
        assert any(a.startswith(prefix) for a in args), f"driver args lack {prefix}: {args}"
    ports = {p["name"]: p["containerPort"] for p in driver["ports"]}
    assert isinstance(ports["metrics"], int) and isinstance(ports["healthz"], int)
    assert driver["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert driver["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    mounts = {m["name"]: m for m in driver["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    pods = mounts["mountpoint-dir"]
    assert pods["mountPropagation"] == "Bidirectional"
    # kubelet passes host paths: the pods directory must sit at the same path inside the container.
    assert pods["mountPath"] == volumes["mountpoint-dir"]["hostPath"]["path"].rstrip("/")
    # The driver refuses targets outside <kubelet root>/pods: its root must be the mounted one.
    root = next(a.split("=", 1)[1] for a in args if a.startswith("--kubelet-root-dir="))
    assert root.rstrip("/") + "/pods" == pods["mountPath"]
    for name, m in mounts.items():
        if name.startswith("providers-dir"):
            assert m["mountPath"] == volumes[name]["hostPath"]["path"], f"{name} mounted elsewhere than on the host"
    provider_dirs = {m["mountPath"] for n, m in mounts.items() if n.startswith("providers-dir")}
    searched = set()
    for a in args:
        if a.startswith("--provider-volume="):
            searched.add(a.split("=", 1)[1])
        if a.startswith("--additional-provider-volume-paths="):
            searched |= {p for p in a.split("=", 1)[1].split(",") if p}
    assert searched == provider_dirs, f"searched provider dirs {searched} != mounted {provider_dirs}"
    res = driver["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
    registrar = container(ds, "node-driver-registrar")
    reg_path = next(a for a in registrar["args"] if a.startswith("--kubelet-registration-path="))
    assert reg_path.split("=", 1)[1] == volumes["plugin-dir"]["hostPath"]["path"].rstrip("/") + "/csi.sock"
    probe = container(ds, "liveness-probe")
    assert f"--http-endpoint=0.0.0.0:{ports['healthz']}" in probe["args"]


def test_deploy_manifest_passes_upstreams_exact_arguments():
    ds = one(_docs((BASE / "daemonset.yaml").read_text()), "DaemonSet")
    assert _driver_args(ds) == [
        "--endpoint=$(CSI_ENDPOINT)",
        "--nodeid=$(KUBE_NODE_NAME)",
        "--kubelet-root-dir=/var/lib/kubelet",  # this driver's own: the one addition to upstream's
        "--provider-volume=/var/run/secrets-store-csi-providers",
        "--additional-provider-volume-paths=/etc/kubernetes/secrets-store-csi-providers",
        "--metrics-addr=:8095",
        "--enable-secret-rotation=false",
        "--rotation-poll-interval=2m",
        "--provider-health-check=false",
        "--provider-health-check-interval=2m",
    ]
    spec = ds["spec"]["template"]["spec"]
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert ds["metadata"]["name"] == "csi-secrets-store"
    assert ds["spec"]["selector"] == {"matchLabels": {"app": "csi-secrets-store"}}


@needs_helm
def test_custom_kubelet_root_dir_moves_every_kubelet_path():
    objs = helm_template("--set", "linux.kubeletRootDir=/data/kubelet")
    ds = one(objs, "DaemonSet")
    text = yaml.safe_dump(ds)
    assert "/var/lib/kubelet" not in text, "a kubelet path still points at /var/lib/kubelet"
    spec = ds["spec"]["template"]["spec"]
    paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert paths["mountpoint-dir"] == "/data/kubelet/pods"
    assert paths["registration-dir"].rstrip("/") == "/data/kubelet/plugins_registry"
    assert paths["plugin-dir"].rstrip("/") == "/data/kubelet/plugins/csi-secrets-store"
    driver = container(ds, DRIVER_CONTAINER)
    mount = next(m for m in driver["volumeMounts"] if m["name"] == "mountpoint-dir")
    assert mount["mountPath"] == "/data/kubelet/pods"
    reg = container(ds, "node-driver-registrar")
    assert "--kubelet-registration-path=/data/kubelet/plugins/csi-secrets-store/csi.sock" in reg["args"]


@needs_helm
def test_upstream_values_file_is_honoured():
    objs = helm_template("-f", str(UPSTREAM_VALUES), "--kube-version", "1.35.0")
    ds = one(objs, "DaemonSet")
    driver = container(ds, DRIVER_CONTAINER)
    args = driver["args"]
    for a in ("-v=5", "--log-format-json=true", "--enable-secret-rotation=true", "--rotation-poll-interval=90s",
              "--provider-health-check=true", "--provider-health-check-interval=1m",
              "--max-call-recv-msg-size=8388608",
              "--additional-provider-volume-paths=/etc/kubernetes/secrets-store-csi-providers,/opt/providers"):
        assert a in args, f"{a} missing from {args}"
    assert driver["image"] == "myregistry.example.org/mirror/secrets-store-csi-driver:v1.6.0"
    assert driver["imagePullPolicy"] == "Always"
    assert driver["resources"]["limits"] == {"cpu": "200m", "memory": "200Mi"}
    assert {"name": "HTTPS_PROXY", "value": "http://proxy.example.org:3128"} in driver["env"]
    spec = ds["spec"]["template"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", "node-role.kubernetes.io/worker": ""}
    assert "priorityClassName" not in spec
    assert ds["spec"]["template"]["metadata"]["labels"]["team"] == "platform"
    assert ds["metadata"]["annotations"] == {"owner": "platform"}
    assert "--v=2" in container(ds, "node-driver-registrar")["args"]
    assert "--http-endpoint=0.0.0.0:9809" in container(ds, "liveness-probe")["args"]
    csidriver = one(objs, "CSIDriver")
    assert csidriver["spec"]["tokenRequests"] == [{"audience": "api://AzureADTokenExchange"},
                                                  {"audience": "sts.amazonaws.com"}]
    assert csidriver["spec"]["serviceAccountTokenInSecrets"] is True
    one(objs, "ClusterRole", "secretprovidersyncing-role")
    for o in objs:
        assert o["metadata"]["labels"]["team_name"] == "dev", f"{o['kind']} lacks commonLabels"
    assert not [o for o in objs if o["kind"] == "PodSecurityPolicy"]
    assert not [o for o in objs if "windows" in yaml.safe_dump(o).lower()], "something was rendered for Windows"


@needs_helm
def test_token_requests_go_into_secrets_only_from_kubernetes_1_35():
    older = one(helm_template("--set", "tokenRequests[0].audience=vault", "--kube-version", "1.34.0"), "CSIDriver")
    assert older["spec"]["tokenRequests"] == [{"audience": "vault"}]
    assert "serviceAccountTokenInSecrets" not in older["spec"]


@needs_helm
def test_install_notes_list_the_ignored_upstream_values():
    out = _run([HELM, "install", "sscd", str(CHART), "--dry-run=client", "-f", str(UPSTREAM_VALUES)])
    notes = out.split("NOTES:", 1)[1]
    for key in ("windows.enabled=true", "rbac.pspEnabled=true", "linux.crds"):
        assert key in notes, f"the install notes do not mention ignored {key}:\n{notes}"
    defaults = _run([HELM, "install", "sscd", str(CHART), "--dry-run=client"]).split("NOTES:", 1)[1]
    assert "NOT used" not in defaults, defaults


def _leaf_keys(d: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v and k not in ("affinity", "resources", "updateStrategy", "podAnnotations"):
            keys += _leaf_keys(v, path + ".")
        else:
            keys.append(path)
    return keys


def test_chart_readme_documents_every_value():
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    undocumented = [k for k in _leaf_keys(values) if f"`{k}`" not in readme]
    assert not undocumented, f"chart README does not document: {undocumented}"


# --------------------------------------------------------------------------
# CSIDriver, RBAC


def test_csidriver_object(rendered):
    spec = one(rendered, "CSIDriver", "secrets-store.csi.k8s.io")["spec"]
    assert spec["attachRequired"] is False
    assert spec["podInfoOnMount"] is True
    assert spec["volumeLifecycleModes"] == ["Ephemeral"]
    assert spec["requiresRepublish"] is True


DRIVER_RULES = {
    ("secrets-store.csi.x-k8s.io", "secretproviderclasses"): {"get", "list", "watch"},
    ("secrets-store.csi.x-k8s.io", "secretproviderclasspodstatuses"):
        {"get", "list", "watch", "create", "update", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
}
SYNC_RULES = {("", "secrets"): {"get", "list", "watch", "create", "update", "patch", "delete"}}


def _granted_to_driver(objs: list[dict]) -> dict:
    """(apiGroup, resource) -> verbs, over every ClusterRole bound to the driver's service account."""
    sa = one(objs, "ServiceAccount", "secrets-store-csi-driver")
    ns = sa["metadata"]["namespace"]
    roles = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ClusterRole"}
    granted: dict = {}
    for b in (o for o in objs if o["kind"] == "ClusterRoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == "secrets-store-csi-driver" and s["namespace"] == ns
                   for s in b["subjects"]):
            continue
        role = roles[b["roleRef"]["name"]]
        for rule in role["rules"]:
            for g in rule.get("apiGroups", []):
                for r in rule.get("resources", []):
                    granted.setdefault((g, r), set()).update(rule["verbs"])
    return granted


def test_driver_rbac_is_least_privilege_and_secrets_only_with_sync(rendered):
    granted = _granted_to_driver(rendered)
    sync = ("", "secrets") in granted
    openshift = ("security.openshift.io", "securitycontextconstraints") in granted
    expected = dict(DRIVER_RULES)
    if sync:
        expected.update(SYNC_RULES)
    if openshift:
        expected[("security.openshift.io", "securitycontextconstraints")] = {"use"}
    assert granted == expected
    names = {o["metadata"]["name"] for o in rendered if o["kind"] == "ClusterRole"}
    assert sync == ("secretprovidersyncing-role" in names)


def test_secret_sync_rbac_is_off_by_default():
    assert ("", "secrets") not in _granted_to_driver(kustomize(DEPLOY))
    assert ("", "secrets") in _granted_to_driver(kustomize(DEPLOY / "overlays" / "sync-secret"))
    if HELM:
        assert ("", "secrets") not in _granted_to_driver(helm_template())
        assert ("", "secrets") in _granted_to_driver(helm_template("--set", "syncSecret.enabled=true"))


def test_openshift_overlay():
    objs = kustomize(DEPLOY / "openshift")
    for o in objs:
        if o["kind"] in ("DaemonSet", "ServiceAccount", "Service"):
            assert o["metadata"]["namespace"] == "openshift-cluster-csi-drivers", o["metadata"]
    scc = one(objs, "SecurityContextConstraints", "secrets-store-csi-driver")
    assert scc["allowPrivilegedContainer"] is True
    assert scc["allowHostDirVolumePlugin"] is True
    assert "hostPath" in scc["volumes"]
    assert scc["allowHostNetwork"] is False and scc["allowHostPID"] is False
    granted = _granted_to_driver(objs)
    assert granted[("security.openshift.io", "securitycontextconstraints")] == {"use"}
    role = one(objs, "ClusterRole", "secrets-store-csi-driver-scc")
    assert role["rules"][0]["resourceNames"] == ["secrets-store-csi-driver"]
    assert not [o for o in objs if o["kind"] == "Namespace"], "the overlay must not own the namespace"


def test_metrics_service_selects_the_driver_pods(rendered):
    services = [o for o in rendered if o["kind"] == "Service"]
    assert len(services) == 1
    svc = services[0]
    ds = one(rendered, "DaemonSet")
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert svc["metadata"]["namespace"] == ds["metadata"]["namespace"]


def test_containerfile():
    text = (DEPLOY / "Containerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) == 2 and froms[0].startswith("swift:6.3") and froms[1] == "debian:bookworm-slim", froms
    # As `make release`: the Swift runtime linked in, so the runtime stage needs no Swift libraries.
    assert "swift build -c release --static-swift-stdlib --product secrets-store-csi-driver" in text
    runtime = text.split("FROM debian:bookworm-slim", 1)[1]
    for pkg in ("libuv1", "libnghttp2-14", "libprotobuf-c1", "libcurl4", "libssl3", "ca-certificates"):
        assert re.search(rf"\b{re.escape(pkg)}\b", runtime), f"runtime stage lacks {pkg}"
    assert "-dev" not in runtime, "the runtime stage installs development packages"
    assert re.search(r"^ENTRYPOINT \[\"/usr/local/bin/secrets-store-csi-driver\"\]", text, re.M)


# --------------------------------------------------------------------------
# CRD schemas


def _crd(name: str) -> dict:
    return _docs((BASE / name).read_text())[0]


def _schema(crd: dict, version: str) -> dict:
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


def _validator(schema: dict):
    if jsonschema is None:
        pytest.fail("the jsonschema Python package is missing: run make deps", pytrace=False)
    return jsonschema.Draft7Validator(schema)


def test_chart_crds_are_the_deploy_crds():
    for name in (SPC_CRD, SPCPS_CRD):
        assert (CHART / "crds" / name).read_text() == (BASE / name).read_text(), \
            f"{name}: the chart's copy differs from deploy/base (copy deploy/base/{name} into the chart's crds/)"


@pytest.mark.parametrize("name", [SPC_CRD, SPCPS_CRD])
def test_crd_versions_and_structural_schema(name):
    crd = _crd(name)
    assert crd["spec"]["group"] == "secrets-store.csi.x-k8s.io"
    assert crd["spec"]["scope"] == "Namespaced"
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert set(versions) == {"v1", "v1alpha1"}
    assert versions["v1"]["served"] and versions["v1"]["storage"]
    assert versions["v1alpha1"]["served"] and not versions["v1alpha1"]["storage"]

    def structural(node: dict, where: str):
        assert "type" in node, f"{name}: {where} has no type (the API server requires a structural schema)"
        for k, sub in node.get("properties", {}).items():
            structural(sub, f"{where}.{k}")
        if isinstance(node.get("items"), dict):
            structural(node["items"], f"{where}[]")
        if isinstance(node.get("additionalProperties"), dict):
            structural(node["additionalProperties"], f"{where}{{}}")

    for v, version in versions.items():
        structural(version["schema"]["openAPIV3Schema"], v)
        _validator(version["schema"]["openAPIV3Schema"]).check_schema(version["schema"]["openAPIV3Schema"])
        for col in version.get("additionalPrinterColumns", []):
            assert col["jsonPath"].startswith(".") and col["type"] in ("string", "boolean", "date", "integer")


def _doc_examples() -> list[tuple[str, dict]]:
    out = []
    for md in sorted(DOCS.glob("*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", md.read_text(), re.S):
            for d in _docs(block):
                if isinstance(d, dict) and d.get("kind") in ("SecretProviderClass", "SecretProviderClassPodStatus"):
                    out.append((f"{md.name}:{d['kind']}/{d['metadata']['name']}", d))
    return out


def _validate(obj: dict) -> list[str]:
    crd = _crd(SPC_CRD if obj["kind"] == "SecretProviderClass" else SPCPS_CRD)
    version = obj["apiVersion"].split("/", 1)[1]
    return [e.message for e in _validator(_schema(crd, version)).iter_errors(obj)]


def test_docs_have_an_example_for_every_common_provider():
    providers = {d["spec"]["provider"] for _, d in _doc_examples() if d["kind"] == "SecretProviderClass"}
    assert {"aws", "azure", "gcp", "vault"} <= providers, providers


@pytest.mark.parametrize("example", _doc_examples(), ids=lambda e: e[0])
def test_crd_schema_accepts_the_docs_examples(example):
    _, obj = example
    assert obj["apiVersion"].startswith("secrets-store.csi.x-k8s.io/")
    assert _validate(obj) == []
    if obj["kind"] == "SecretProviderClass":
        v1alpha1 = dict(obj, apiVersion="secrets-store.csi.x-k8s.io/v1alpha1")
        assert _validate(v1alpha1) == []


SPC = {
    "apiVersion": "secrets-store.csi.x-k8s.io/v1",
    "kind": "SecretProviderClass",
    "metadata": {"name": "x", "namespace": "default"},
    "spec": {
        "provider": "vault",
        "parameters": {"roleName": "app", "objects": "- objectName: a\n"},
        "secretObjects": [{"secretName": "s", "type": "Opaque", "labels": {"a": "b"},
                           "data": [{"objectName": "a", "key": "k"}]}],
    },
}
SPCPS = {
    "apiVersion": "secrets-store.csi.x-k8s.io/v1",
    "kind": "SecretProviderClassPodStatus",
    "metadata": {"name": "p-default-x", "namespace": "default"},
    "status": {"podName": "p", "secretProviderClassName": "x", "mounted": True,
               "targetPath": "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/v/mount",
               "objects": [{"id": "a", "version": "1"}]},
}


def _broken(base: dict, path: str, value) -> dict:
    obj = copy.deepcopy(base)
    node = obj
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    last = keys[-1]
    node[int(last) if last.isdigit() else last] = value
    return obj


MALFORMED = {
    "parameter-value-is-a-number": (SPC, "spec.parameters.retries", 3),
    "parameter-value-is-a-map": (SPC, "spec.parameters.objects", {"objectName": "a"}),
    "parameters-is-a-list": (SPC, "spec.parameters", ["a", "b"]),
    "provider-is-a-list": (SPC, "spec.provider", ["vault"]),
    "secretObjects-is-a-map": (SPC, "spec.secretObjects", {"secretName": "s"}),
    "secretObject-label-is-a-bool": (SPC, "spec.secretObjects.0.labels.a", True),
    "secretObject-data-objectName-is-a-number": (SPC, "spec.secretObjects.0.data.0.objectName", 1),
    "spec-is-a-string": (SPC, "spec", "provider: vault"),
    "podstatus-mounted-is-a-string": (SPCPS, "status.mounted", "yes"),
    "podstatus-objects-is-a-string": (SPCPS, "status.objects", "a:1"),
    "podstatus-object-version-is-a-number": (SPCPS, "status.objects.0.version", 1),
    "podstatus-podName-is-a-map": (SPCPS, "status.podName", {"name": "p"}),
}


def test_crd_schema_accepts_well_formed_objects():
    assert _validate(SPC) == []
    assert _validate(SPCPS) == []
    assert _validate(dict(SPCPS, apiVersion="secrets-store.csi.x-k8s.io/v1alpha1")) == []


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_crd_schema_rejects_malformed_objects(case):
    base, path, value = MALFORMED[case]
    bad = _broken(base, path, value)
    assert _validate(bad), f"{case}: the schema accepted {bad}"
    if bad["kind"] == "SecretProviderClass":
        assert _validate(dict(bad, apiVersion="secrets-store.csi.x-k8s.io/v1alpha1")), f"{case}: v1alpha1 accepted it"


@needs_helm
def test_install_notes_warn_about_the_upstream_image():
    out = _run([HELM, "install", "sscd", str(CHART), "--dry-run=client",
                "--set", "linux.image.repository=registry.k8s.io/csi-secrets-store/driver", "--set", "linux.image.tag=v1.6.0"])
    assert "upstream Go driver's image" in out.split("NOTES:", 1)[1]


@needs_helm
def test_rbac_install_false_and_linux_enabled_false():
    objs = helm_template("--set", "rbac.install=false")
    kinds = {o["kind"] for o in objs}
    assert not kinds & {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}, kinds
    # As upstream: the Secret sync role follows syncSecret.enabled alone.
    objs = helm_template("--set", "rbac.install=false", "--set", "syncSecret.enabled=true")
    assert {o["metadata"]["name"] for o in objs if o["kind"].startswith("ClusterRole")} == {
        "secretprovidersyncing-role", "secretprovidersyncing-rolebinding"}
    assert one(objs, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"] == "secrets-store-csi-driver"
    objs = helm_template("--set", "linux.enabled=false")
    kinds = {o["kind"] for o in objs}
    assert "DaemonSet" not in kinds and "Service" not in kinds
    assert "CSIDriver" in kinds


@needs_helm
def test_chart_defaults_agree_with_the_deploy_manifests():
    """Two renderings of one install: the chart's defaults and deploy/base must not drift apart."""
    base = one(_docs((BASE / "daemonset.yaml").read_text()), "DaemonSet")["spec"]["template"]["spec"]
    chart = one(helm_template(), "DaemonSet")["spec"]["template"]["spec"]
    assert sorted((v["name"], v["hostPath"]["path"], v["hostPath"]["type"]) for v in base["volumes"]) == \
        sorted((v["name"], v["hostPath"]["path"], v["hostPath"]["type"]) for v in chart["volumes"])
    for key in ("priorityClassName", "tolerations", "nodeSelector", "serviceAccountName"):
        assert base[key] == chart[key], key
    for b, c in zip(base["containers"], chart["containers"]):
        assert b["name"] == c["name"]
        for key in ("volumeMounts", "resources", "livenessProbe", "readinessProbe", "securityContext", "ports", "env"):
            assert b.get(key) == c.get(key), f"{b['name']}.{key} differs"
        if b["name"] != DRIVER_CONTAINER:
            assert b["image"] == c["image"] and b["args"] == c["args"], b["name"]
    base_csidriver = one(_docs((BASE / "csidriver.yaml").read_text()), "CSIDriver")["spec"]
    chart_csidriver = one(helm_template(), "CSIDriver")["spec"]
    assert base_csidriver == chart_csidriver


# ---- applied to an API server


@pytest.mark.parametrize("how", ["helm-defaults", "helm-upstream-values", "kustomize-deploy", "kustomize-sync-secret",
                                 "kustomize-openshift"])
def test_kubectl_apply_of_the_install_succeeds(kube_api_factory, how, tmp_path):
    """The rendered install, applied with the real kubectl to the test API server (CRDs
    included, none preloaded), then applied again unchanged: what a user does."""
    if how.startswith("helm") and HELM is None:
        pytest.skip("helm not found (make deps installs it into .venv/bin; HELM overrides)")
    preload: tuple = ()
    if how == "kustomize-openshift":
        # SecurityContextConstraints is built into OpenShift; here it is a CRD of the same shape.
        scc = tmp_path / "scc-crd.yaml"
        scc.write_text(yaml.safe_dump({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "securitycontextconstraints.security.openshift.io"},
            "spec": {"group": "security.openshift.io", "scope": "Cluster",
                     "names": {"kind": "SecurityContextConstraints", "plural": "securitycontextconstraints",
                               "singular": "securitycontextconstraints", "shortNames": ["scc"]},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}))
        preload = (str(scc),)
    api = kube_api_factory(preload=preload)
    objs = RENDERINGS[how]()
    for ns in {o["metadata"]["namespace"] for o in objs if o["metadata"].get("namespace")}:
        api.ensure_namespace(ns)  # an install goes into a namespace that exists (kube-system, OpenShift's own)
    if how.startswith("helm"):
        # helm installs its crds/ directory before the templates; `helm template` leaves them out.
        objs = _docs((CHART / "crds" / SPC_CRD).read_text()) + _docs((CHART / "crds" / SPCPS_CRD).read_text()) + objs
    manifest = tmp_path / "install.yaml"
    manifest.write_text(yaml.safe_dump_all(objs))
    first = api.kubectl("apply", "-f", str(manifest))
    assert "created" in first.stdout
    second = api.kubectl("apply", "-f", str(manifest))
    assert "created" not in second.stdout, second.stdout
    # What was applied is there, as kubectl shows it.
    want = one(objs, "DaemonSet")
    ds = api.kubectl_json("get", "daemonset", want["metadata"]["name"], "-n", want["metadata"]["namespace"])
    assert any(c["name"] == DRIVER_CONTAINER for c in ds["spec"]["template"]["spec"]["containers"])
    assert container(ds, DRIVER_CONTAINER)["args"] == container(want, DRIVER_CONTAINER)["args"]
    api.kubectl("get", "csidriver", "secrets-store.csi.k8s.io")
    crds = api.kubectl_json("get", "crd")["items"]
    assert {"secretproviderclasses.secrets-store.csi.x-k8s.io", "secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io"} <= {
        c["metadata"]["name"] for c in crds}
    # The CRDs serve: an example class from the docs applies and reads back.
    example = next(o for _, o in _doc_examples())
    namespace = example["metadata"].get("namespace", "default")
    api.ensure_namespace(namespace)
    ex = tmp_path / "spc.yaml"
    ex.write_text(yaml.safe_dump(example))
    api.kubectl("apply", "-f", str(ex))
    api.kubectl("get", "secretproviderclass", example["metadata"]["name"], "-n", namespace)
