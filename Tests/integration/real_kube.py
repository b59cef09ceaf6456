"""A real Kubernetes control plane for the integration tests: etcd, kube-apiserver and
kube-controller-manager (whose garbage collector is the real one) on 127.0.0.1.

    from real_kube import real_kube, real_kube_session  # noqa: F401 (fixtures)

    def test_something(real_kube):
        real_kube.kubectl("apply", "-f", path)
        code, obj = real_kube.request("GET", "/api/v1/namespaces/default/secrets/x")
        w = real_kube.watch("/api/v1/namespaces/default/configmaps", resourceVersion=rv)

The interface follows the test API server's fixture (kubeapi_fixture.KubeAPI): url, host,
port, ca, admin_token, kubeconfig, kubectl(), kubectl_json(), kubeconfig_for(), request(),
ok(), get(), create(), watch(), requests() and clear_requests() (from the API server's audit
log), run_gc() (a no-op: the real garbage collector needs no trigger), stop(), so one test body
can run against both. The test server's fault injection (compact, down, up, inject_conflicts,
inject_fault, expire_token, pause_gc, ...) has no counterpart: those methods skip the test.
Extras: limited_token (user "limited", no RBAC permissions until a test grants some with
grant()), add_service_account_token() (a TokenRequest token, RBAC rules bound to its service
account), namespace(), rss(), alive(), startup_seconds, timings, backend = "real".

The binaries come from scripts/build-kube-control-plane.sh (`make kube-control-plane`), cached
outside the repository. Without them the fixtures skip with the reason; REAL_KUBE_REQUIRED=1
turns that skip into a failure (for CI that built them).

One control plane serves the whole session (startup takes seconds), so tests share it: each
test gets a namespace of its own from `real_kube.namespace()` or works with unique names.
The secrets-store CRDs from deploy/base are applied before the controller manager starts, so
the garbage collector watches them from the beginning (it discovers CRDs created later only on
its 30-second resync).

Environment:
  KUBE_CACHE_DIR        the build cache (default /var/cache/secrets-store-csi-driver/kube-v1.20.2);
                        binaries in KUBE_CACHE_DIR/bin
  KUBE_BIN_DIR          overrides the binary directory itself
  ETCD_BIN              etcd (default: KUBE_BIN_DIR/etcd, then etcd on PATH)
  KUBECTL               kubectl (default .venv/bin/kubectl)
  REAL_KUBE_REQUIRED=1  fail instead of skipping when the binaries are missing
  REAL_KUBE_KEEP=1      keep the state directory (logs, certificates) after teardown
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

from kubeapi_fixture import APIClient, WatchStream  # one client and watch reader for both API servers

REPO = Path(__file__).resolve().parents[2]
KUBE_VERSION = "v1.20.2"
DEFAULT_CACHE = Path("/var/cache/secrets-store-csi-driver") / f"kube-{KUBE_VERSION}"
START_TIMEOUT = float(os.environ.get("REAL_KUBE_START_TIMEOUT", "90"))
SECRETS_STORE_CRDS = [REPO / "deploy" / "base" / "secrets-store.csi.x-k8s.io_secretproviderclasses.yaml",
                      REPO / "deploy" / "base" / "secrets-store.csi.x-k8s.io_secretproviderclasspodstatuses.yaml"]
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


def kubectl_path() -> Path:
    return Path(os.environ.get("KUBECTL") or REPO / ".venv" / "bin" / "kubectl")


def cache_dir() -> Path:
    return Path(os.environ.get("KUBE_CACHE_DIR") or DEFAULT_CACHE)


def bin_dir() -> Path:
    return Path(os.environ.get("KUBE_BIN_DIR") or cache_dir() / "bin")


def find_binaries() -> tuple[dict[str, Path] | None, str]:
    """({name: path}, "") when everything is there, else (None, why not)."""
    d = bin_dir()
    found: dict[str, Path] = {}
    missing = []
    absent = [n for n in ("kube-apiserver", "kube-controller-manager") if not os.access(d / n, os.X_OK)]
    found.update({n: d / n for n in ("kube-apiserver", "kube-controller-manager") if n not in absent})
    if absent:
        missing.append(f"{' and '.join(absent)} in {d}")
    elif not os.environ.get("KUBE_BIN_DIR") and not (cache_dir() / ".complete").exists():
        missing.append(f"{cache_dir() / '.complete'} (the build did not finish)")
    etcd = os.environ.get("ETCD_BIN") or (str(d / "etcd") if os.access(d / "etcd", os.X_OK) else shutil.which("etcd"))
    if etcd and os.access(etcd, os.X_OK):
        found["etcd"] = Path(etcd)
    else:
        missing.append("etcd (Debian package etcd-server)")
    if not kubectl_path().exists():
        missing.append(f"kubectl at {kubectl_path()} (make deps)")
    if missing:
        return None, ("real Kubernetes control plane not available (run `make kube-control-plane`): missing "
                      + ", ".join(missing))
    return found, ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=10.0, what="condition", interval=0.05):
    """Polls cond() until it returns something truthy; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _openssl(*args, cwd: Path):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{r.stderr}")


def make_pki(d: Path):
    """CA, a serving certificate for 127.0.0.1/localhost, and the service-account key pair."""
    d.mkdir(parents=True, exist_ok=True)
    # EC P-256 keys: generated in milliseconds where RSA takes seconds on a busy machine.
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=real-kube-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=d)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr",
             "-subj", "/CN=kube-apiserver", cwd=d)
    (d / "apiserver.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n")
    _openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "apiserver.crt", "-days", "2", "-extfile", "apiserver.ext", cwd=d)
    # Service-account tokens are then ES256 JWTs (kube-apiserver signs with RSA or ECDSA keys).
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key", cwd=d)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def write_kubeconfig(path: Path, server: str, ca: Path, token: str, user: str = "admin"):
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "real-kube", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "real-kube", "context": {"cluster": "real-kube", "user": user}}],
        "current-context": "real-kube",
    }, indent=2))
    path.chmod(0o600)


class RealKube(APIClient):
    """A running etcd + kube-apiserver + kube-controller-manager."""

    backend = "real"

    def __init__(self, state_dir: Path, binaries: dict[str, Path], preload_crds=(), etcd_dir: Path | None = None,
                 apiserver_args=(), controller_manager_args=()):
        self.state_dir = Path(state_dir)
        self.binaries = binaries
        self._apiserver_args = list(apiserver_args)
        self._kcm_args = list(controller_manager_args)
        self.procs: dict[str, subprocess.Popen] = {}
        self._watches: list[WatchStream] = []
        self._bg: list[subprocess.Popen] = []
        self._namespaces: list[str] = []
        self._etcd_dir = etcd_dir or self.state_dir / "etcd"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.url = f"https://{self.host}:{self.port}"
        self.ca = str(self.state_dir / "pki" / "ca.crt")
        self.admin_token = secrets.token_hex(24)
        self.limited_token = secrets.token_hex(24)
        self._kcm_token = secrets.token_hex(24)
        self.kubeconfig = str(self.state_dir / "kubeconfig")
        self.startup_seconds = None
        self.ssl = None
        self._requests_base = 0
        try:
            self._start(preload_crds)
        except BaseException:
            self.stop()  # nothing half-started stays behind (idempotent after _failed)
            raise

    # -------------------------------------------------------------- lifecycle

    def _spawn(self, name: str, cmd: list[str]):
        log = open(self.state_dir / f"{name}.log", "wb")
        try:
            # A session of its own: teardown signals the process group, so nothing it forks survives.
            self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True)
        finally:
            log.close()

    def log_tail(self, name: str, lines=40) -> str:
        p = self.state_dir / f"{name}.log"
        if not p.exists():
            return ""
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:])

    def _failed(self, what: str) -> RuntimeError:
        parts = [what]
        for name, p in self.procs.items():
            parts.append(f"--- {name} (exit {p.poll()}) {self.state_dir / (name + '.log')}:\n{self.log_tail(name)}")
        self.stop()
        return RuntimeError("\n".join(parts))

    def _start(self, preload_crds):
        t0 = time.monotonic()
        self.timings: dict[str, float] = {}

        def mark(what):
            self.timings[what] = round(time.monotonic() - t0, 2)

        sd = self.state_dir
        self._etcd_dir.mkdir(parents=True, exist_ok=True)
        etcd_client, etcd_peer = free_port(), free_port()
        self._spawn("etcd", [
            str(self.binaries["etcd"]), "--name", "real-kube", "--data-dir", str(self._etcd_dir / "data"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"real-kube=http://127.0.0.1:{etcd_peer}",
            "--initial-cluster-state", "new", "--log-level", "warn", "--logger", "zap",
            "--quota-backend-bytes", str(512 << 20), "--snapshot-count", "100000",
        ])
        # The keys while etcd comes up.
        pki = sd / "pki"
        make_pki(pki)
        mark("pki")
        # token,user,uid,"groups" (kube-apiserver's static token file; read once at startup)
        (sd / "tokens.csv").write_text(
            f'{self.admin_token},admin,admin-uid,"system:masters"\n'
            f'{self._kcm_token},system:kube-controller-manager,kcm-uid,"system:masters"\n'
            f'{self.limited_token},limited,limited-uid,"system:authenticated"\n')
        (sd / "tokens.csv").chmod(0o600)
        # The audit log is the request log (requests()): metadata only, never a body.
        (sd / "audit-policy.yaml").write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"
            "rules:\n- level: Metadata\n")
        self.audit_log = sd / "audit.log"
        # kube-apiserver retries etcd until it answers.
        self._spawn("kube-apiserver", [
            str(self.binaries["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={sd / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--api-audiences={SA_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            f"--audit-policy-file={sd / 'audit-policy.yaml'}", f"--audit-log-path={self.audit_log}",
            "--audit-log-maxbackup=0", "--audit-log-mode=blocking",
            "--logtostderr=true", "--v=0",
            *self._apiserver_args,
        ])
        write_kubeconfig(Path(self.kubeconfig), self.url, Path(self.ca), self.admin_token)
        write_kubeconfig(sd / "kcm.kubeconfig", self.url, Path(self.ca), self._kcm_token,
                         user="system:kube-controller-manager")
        self.ssl = ssl.create_default_context(cafile=self.ca)
        deadline = t0 + START_TIMEOUT
        while True:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise self._failed(f"{name} exited during startup")
            if self._readyz():
                break
            if time.monotonic() > deadline:
                raise self._failed(f"kube-apiserver not ready within {START_TIMEOUT}s")
            time.sleep(0.05)
        mark("apiserver ready")
        # The CRDs before the controller manager: its garbage collector then watches them from
        # the start instead of after its 30-second discovery resync.
        crds = [self._load_crd(Path(c)) for c in preload_crds]
        for crd in crds:
            code, body = self.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            if code not in (201, 409):
                raise self._failed(f"creating CRD {crd['metadata']['name']} -> {code}: {body}")
        for crd in crds:
            path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
            while not self._established(path):
                if time.monotonic() > deadline:
                    raise self._failed(f"CRD {crd['metadata']['name']} not established")
                time.sleep(0.05)
        mark("crds established")
        self._spawn("kube-controller-manager", [
            str(self.binaries["kube-controller-manager"]),
            f"--kubeconfig={sd / 'kcm.kubeconfig'}",
            "--controllers=garbagecollector,namespace",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            "--secure-port=0", "--port=0",
            "--profiling=false",
            "--logtostderr=true", "--v=0",
            *self._kcm_args,
        ])
        self.startup_seconds = time.monotonic() - t0

    @staticmethod
    def _load_crd(path: Path) -> dict:
        import yaml  # pyyaml: a test dependency (make deps)
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if len(docs) != 1 or docs[0].get("kind") != "CustomResourceDefinition":
            raise ValueError(f"{path}: expected one CustomResourceDefinition")
        return docs[0]

    def _established(self, path) -> bool:
        code, crd = self.request("GET", path)
        return code == 200 and any(c.get("type") == "Established" and c.get("status") == "True"
                                   for c in (crd.get("status") or {}).get("conditions") or [])

    def _readyz(self) -> bool:
        c = http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=2)
        try:
            c.request("GET", "/readyz", headers={"Authorization": f"Bearer {self.admin_token}"})
            r = c.getresponse()
            r.read()
            return r.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            c.close()

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self.procs.items()}

    def rss(self) -> dict[str, int]:
        """Resident set size in bytes of each process."""
        out = {}
        for name, p in self.procs.items():
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[name] = int(line.split()[1]) * 1024
            except OSError:
                pass
        return out

    def stop(self):
        for w in self._watches:
            w.close()
        self._watches.clear()
        for p in self._bg:
            if p.poll() is None:
                p.kill()
            try:
                p.communicate(timeout=5)
            except Exception:
                pass
        self._bg.clear()
        # The controller manager first (it would log errors without an API server), etcd last.
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            p = self.procs.get(name)
            if p is None:
                continue
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    pass
            try:  # whatever is left in its process group
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass

    # -------------------------------------------------------------- kubectl

    def kubectl(self, *args, input: str | None = None, check=True, timeout=30, kubeconfig=None,
                background=False):
        """Runs the real kubectl against this control plane. Returns CompletedProcess (text),
        or a Popen with background=True (stopped at teardown)."""
        cmd = [str(kubectl_path()), "--kubeconfig", str(kubeconfig or self.kubeconfig), *map(str, args)]
        env = dict(os.environ, HOME=str(self.state_dir), KUBECACHEDIR=str(self.state_dir / "kube-cache"))
        if background:
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            self._bg.append(p)
            return p
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}{r.stdout}")
        return r

    def kubectl_json(self, *args, **kw):
        return json.loads(self.kubectl(*args, "-o", "json", **kw).stdout)

    def kubeconfig_for(self, token: str, name="user") -> Path:
        p = self.state_dir / f"kubeconfig-{name}-{token[:8]}"
        write_kubeconfig(p, self.url, Path(self.ca), token, user=name)
        return p

    # -------------------------------------------------------------- helpers

    def namespace(self, prefix="t") -> str:
        """Creates a namespace with a unique name; cleanup_namespaces() deletes them."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self._namespaces.append(name)
        return name

    def cleanup_namespaces(self):
        """Deletes the namespaces namespace() made (the namespace controller empties them)."""
        for ns in self._namespaces:
            self.request("DELETE", f"/api/v1/namespaces/{ns}")
        self._namespaces.clear()

    def grant(self, user: str, rules: list[dict], namespace: str | None = None, kind="User") -> str:
        """Binds RBAC rules to a user (or kind="ServiceAccount", user="ns:name"): a Role and
        RoleBinding in `namespace`, or a ClusterRole and ClusterRoleBinding without one."""
        name = f"grant-{uuid.uuid4().hex[:8]}"
        subject = {"kind": kind, "name": user}
        if kind == "User":
            subject["apiGroup"] = "rbac.authorization.k8s.io"
        else:
            subject["namespace"], subject["name"] = user.split(":", 1)
        if namespace:
            base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
            role_kind, binding_kind, roles, bindings = "Role", "RoleBinding", "roles", "rolebindings"
        else:
            base = "/apis/rbac.authorization.k8s.io/v1"
            role_kind, binding_kind, roles, bindings = "ClusterRole", "ClusterRoleBinding", "clusterroles", \
                "clusterrolebindings"
        self.create(f"{base}/{roles}", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": role_kind,
                                         "metadata": {"name": name}, "rules": rules})
        self.create(f"{base}/{bindings}", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": binding_kind, "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
            "subjects": [subject]})
        return name

    # -------------------------------------------------------------- the request log (audit)

    _METHODS = {"get": "GET", "list": "GET", "watch": "GET", "create": "POST", "update": "PUT",
                "patch": "PATCH", "delete": "DELETE", "deletecollection": "DELETE"}

    def requests(self, since=0) -> dict:
        """The requests the server completed (or started, for watches), from its audit log, in
        the test API server's format: {"requests": [{method, path, query, verb, resource,
        subresource, namespace, name, user, code}], "counts": {"<verb> <resource>": n},
        "next": index for since=}. Includes the controller manager's and the API server's own
        requests (users system:kube-controller-manager, system:apiserver): filter by user.
        Lines can lag a response by milliseconds."""
        out, seen = [], set()
        try:
            lines = self.audit_log.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a line being written
            if ev.get("auditID") in seen:
                continue  # a watch's ResponseComplete after its ResponseStarted
            seen.add(ev.get("auditID"))
            ref = ev.get("objectRef") or {}
            uri = urllib.parse.urlsplit(ev.get("requestURI", ""))
            out.append({"method": self._METHODS.get(ev.get("verb"), ev.get("verb", "").upper()),
                        "path": uri.path, "query": dict(urllib.parse.parse_qsl(uri.query)),
                        "verb": ev.get("verb"), "resource": ref.get("resource"),
                        "subresource": ref.get("subresource"), "namespace": ref.get("namespace"),
                        "name": ref.get("name"), "user": (ev.get("user") or {}).get("username"),
                        "code": (ev.get("responseStatus") or {}).get("code")})
        out = out[self._requests_base:]
        picked = out[since:]
        counts: dict[str, int] = {}
        for r in picked:
            if r["resource"]:
                key = f"{r['verb']} {r['resource']}" + (f"/{r['subresource']}" if r["subresource"] else "")
                counts[key] = counts.get(key, 0) + 1
        return {"requests": picked, "counts": counts, "next": len(out)}

    def clear_requests(self):
        """Forgets the requests so far: requests() after it lists only newer ones."""
        self._requests_base += self.requests()["next"]

    # -------------------------------------------------------------- the test server's fault injection

    def run_gc(self):
        """The real garbage collector runs continuously: nothing to trigger (wait instead)."""

    def _no_fault_injection(self, *_a, **_k):
        pytest.skip("fault injection needs the test API server (Tests/kubeapi); the real one has none")

    compact = drop_watches = down = up = set_latency = set_bookmark_interval = _no_fault_injection
    inject_conflicts = inject_fault = expire_token = pause_gc = _no_fault_injection

    def add_service_account_token(self, namespace, name, rules=None, expiration_seconds=3600,
                                  audiences=None) -> str:
        """A service account (created if missing) with `rules` bound in its namespace, and a token
        for it from the TokenRequest API (as kubelet gets for a projected volume)."""
        code, _ = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                               {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
        if code not in (201, 409):
            raise AssertionError(f"creating service account {namespace}/{name} -> {code}")
        if rules:
            self.grant(f"{namespace}:{name}", rules, namespace=namespace, kind="ServiceAccount")
        spec = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        tr = self.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                         {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        return tr["status"]["token"]


def _start_with_retry(state_dir: Path, binaries, crds, etcd_dir=None, attempts=3) -> RealKube:
    """Free ports are picked by binding port 0 and closing it, so another process may take one
    before etcd or kube-apiserver binds it: start again on fresh ports when that happened."""
    for attempt in range(attempts):
        for child in ([etcd_dir] if etcd_dir else []) + [state_dir]:
            shutil.rmtree(child, ignore_errors=True)
            child.mkdir(parents=True)
        try:
            return RealKube(state_dir, binaries, preload_crds=crds, etcd_dir=etcd_dir)
        except RuntimeError as e:
            if "address already in use" not in str(e) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def start_real_kube(state_dir: Path | None = None, preload_crds=tuple(SECRETS_STORE_CRDS),
                    etcd_dir: Path | None = None) -> RealKube:
    """Starts a control plane (the caller stops it and removes state_dir and etcd_dir). Raises
    RuntimeError("...not available...") when the binaries are missing."""
    binaries, why = find_binaries()
    if binaries is None:
        raise RuntimeError(why)
    state_dir = Path(state_dir or tempfile.mkdtemp(prefix="real-kube-"))
    return _start_with_retry(state_dir, binaries, [c for c in preload_crds if Path(c).exists()], etcd_dir)


@pytest.fixture(scope="session")
def real_kube_session():
    """One real control plane for the session; skips (visibly, with the reason) without binaries."""
    binaries, why = find_binaries()
    if binaries is None:
        if os.environ.get("REAL_KUBE_REQUIRED") == "1":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    state_dir = Path(tempfile.mkdtemp(prefix="real-kube-"))
    # etcd writes with fsync: on tmpfs that costs nothing, on a shared disk it costs seconds.
    shm = Path("/dev/shm")
    etcd_dir = Path(tempfile.mkdtemp(prefix="real-kube-etcd-", dir=shm)) if shm.is_dir() else None
    kube = None
    try:
        kube = _start_with_retry(state_dir, binaries, [c for c in SECRETS_STORE_CRDS if c.exists()], etcd_dir)
        yield kube
    finally:
        if kube is not None:
            kube.stop()
        if os.environ.get("REAL_KUBE_KEEP") == "1":
            print(f"\nreal_kube: state kept in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
        if etcd_dir is not None:
            shutil.rmtree(etcd_dir, ignore_errors=True)


@pytest.fixture
def real_kube(real_kube_session) -> RealKube:
    """The session's control plane; fails the test if a component died. Namespaces made with
    real_kube.namespace() are deleted after the test."""
    dead = [n for n, up in real_kube_session.alive().items() if not up]
    if dead:
        pytest.fail(f"real control plane component(s) exited: {dead}\n" +
                    "\n".join(real_kube_session.log_tail(n) for n in dead), pytrace=False)
    real_kube_session.clear_requests()
    try:
        yield real_kube_session
    finally:
        real_kube_session.cleanup_namespaces()
        for w in real_kube_session._watches:
            w.close()
        real_kube_session._watches.clear()
