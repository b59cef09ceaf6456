"""The test Kubernetes API server (Tests/kubeapi/apiserver.py) as a pytest
fixture, with a small HTTPS client, the real kubectl, and the control API.

    def test_something(kube_api):            # a fresh server per test
        kube_api.kubectl("apply", "-f", path)
        code, obj = kube_api.request("GET", "/api/v1/namespaces/default/secrets/x")
        kube_api.inject_conflicts("secretproviderclasspodstatuses", count=2)

`kube_api_factory(*extra_args, preload=("secrets-store",))` starts more (or
differently configured) servers; all of them are stopped at teardown.
Pass "--http2" to offer HTTP/2 as a real server does (KUBEAPI_HTTP2=1 does it
for every server). Environment: KUBECTL (default .venv/bin/kubectl), KUBEAPI_VERBOSE=1.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "Tests" / "kubeapi" / "apiserver.py"
START_TIMEOUT = float(os.environ.get("KUBEAPI_START_TIMEOUT", "20"))


def kubectl_path() -> Path:
    return Path(os.environ.get("KUBECTL") or REPO / ".venv" / "bin" / "kubectl")


def wait_for(cond, timeout=10.0, what="condition", interval=0.02):
    """Polls cond() until it returns something truthy; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class WatchStream:
    """One watch request; events are read by a thread into a queue."""

    def __init__(self, conn: http.client.HTTPSConnection, resp: http.client.HTTPResponse):
        self.conn = conn
        self.resp = resp
        self.status = resp.status
        self.events: queue.Queue = queue.Queue()
        self.ended = threading.Event()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.strip()
                if line:
                    self.events.put(json.loads(line))
        except Exception:
            pass
        finally:
            self.ended.set()

    def next(self, timeout=10.0, skip_bookmarks=True) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no watch event within {timeout}s")
            try:
                ev = self.events.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.ended.is_set() and self.events.empty():
                    raise AssertionError("the watch ended")
                continue
            if skip_bookmarks and ev.get("type") == "BOOKMARK":
                continue
            return ev

    def wait_ended(self, timeout=10.0) -> bool:
        return self.ended.wait(timeout)

    def close(self):
        try:
            self.conn.sock and self.conn.sock.shutdown(2)
        except OSError:
            pass
        self.conn.close()
        self._t.join(5)


class APIClient:
    """Requests to an API server over HTTPS with bearer tokens, shared by the test API
    server (KubeAPI) and the real one (real_kube.RealKube). Needs host, port, ssl (a
    client SSLContext trusting the server), admin_token and _watches."""

    def _conn(self, timeout=30):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=timeout)

    def request(self, method, path, body=None, token: str | None = "admin", content_type="application/json",
                query: dict | None = None, headers: dict | None = None, timeout=30):
        """One request. Returns (status code, parsed JSON body or text)."""
        if query:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(query)
        h = dict(headers or {})
        if token == "admin":
            token = self.admin_token
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            if isinstance(data, str):
                data = data.encode()
            h["Content-Type"] = content_type
        c = self._conn(timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw) if raw else None
            except ValueError:
                return r.status, raw.decode(errors="replace")
        finally:
            c.close()

    def ok(self, method, path, body=None, **kw):
        code, obj = self.request(method, path, body, **kw)
        if code >= 300:
            raise AssertionError(f"{method} {path} -> {code}: {obj}")
        return obj

    def get(self, path, **kw):
        return self.ok("GET", path, **kw)

    def create(self, path, body, **kw):
        return self.ok("POST", path, body, **kw)


    def watch(self, path, token="admin", **params) -> WatchStream:
        """Starts a watch (params are query parameters; watch=1 is added)."""
        q = dict(params)
        q["watch"] = "1"
        full = path + "?" + urllib.parse.urlencode(q)
        c = self._conn(timeout=120)
        h = {"Authorization": f"Bearer {self.admin_token if token == 'admin' else token}"}
        c.request("GET", full, headers=h)
        r = c.getresponse()
        w = WatchStream(c, r)
        self._watches.append(w)
        return w


class KubeAPI(APIClient):
    """A running test API server: url, ca, admin_token, kubeconfig, control_url."""

    def __init__(self, state_dir: Path, proc: subprocess.Popen, info: dict):
        self.state_dir = state_dir
        self.proc = proc
        self.info = info
        self.url = info["url"]
        self.host, self.port = "127.0.0.1", info["port"]
        self.control_url = info["control_url"]
        self.ca = info["ca"]
        self.admin_token = info["admin_token"]
        self.kubeconfig = info["kubeconfig"]
        self.tokens_file = info["tokens_file"]
        self.ssl = ssl.create_default_context(cafile=self.ca)
        self._watches: list[WatchStream] = []

    # -------------------------------------------------------------- kubectl

    def kubectl(self, *args, input: str | None = None, check=True, timeout=30, kubeconfig=None,
                background=False):
        """Runs the real kubectl against this server. Returns CompletedProcess
        (text), or a Popen with background=True (stopped at teardown)."""
        if not kubectl_path().exists():
            pytest.fail(f"kubectl is missing at {kubectl_path()} (make deps installs it; KUBECTL overrides)",
                        pytrace=False)
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

    _bg: list

    def kubectl_json(self, *args, **kw):
        return json.loads(self.kubectl(*args, "-o", "json", **kw).stdout)

    def kubeconfig_for(self, token: str, name="user") -> Path:
        src = json.loads(Path(self.kubeconfig).read_text())
        src["users"] = [{"name": name, "user": {"token": token}}]
        src["contexts"][0]["context"]["user"] = name
        p = self.state_dir / f"kubeconfig-{token[:8]}"
        p.write_text(json.dumps(src))
        return p

    def wait_for_object(self, path, cond=lambda obj: True, timeout=10.0, what=None):
        """Polls GET path until the object exists and cond(obj) holds; returns it."""
        def probe():
            code, obj = self.request("GET", path)
            return obj if code == 200 and cond(obj) else None
        return wait_for(probe, timeout, what or f"{path} to satisfy the condition")

    def wait_gone(self, path, timeout=10.0):
        """Polls until GET path answers 404."""
        wait_for(lambda: self.request("GET", path)[0] == 404, timeout, f"{path} to be gone")

    # -------------------------------------------------------------- common objects

    def ensure_namespace(self, name) -> dict:
        code, obj = self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        if code == 409:
            return self.get(f"/api/v1/namespaces/{name}")
        if code != 201:
            raise AssertionError(f"namespace {name}: {code} {obj}")
        return obj

    def create_pod(self, name, namespace="default", node="node-1", labels=None, service_account="default",
                   volumes=None) -> dict:
        """A Pod bound to `node` (its uid is what kubelet passes in volume_context)."""
        spec = {"nodeName": node, "serviceAccountName": service_account,
                "containers": [{"name": "app", "image": "registry.example/app:1"}]}
        if volumes:
            spec["volumes"] = volumes
        return self.create(f"/api/v1/namespaces/{namespace}/pods",
                           {"metadata": {"name": name, "labels": labels or {}}, "spec": spec})

    def create_spc(self, name, namespace="default", provider="fake", parameters=None, secret_objects=None,
                   version="v1") -> dict:
        """A SecretProviderClass (the secrets-store CRDs must be loaded)."""
        spec = {"provider": provider, "parameters": parameters or {}}
        if secret_objects is not None:
            spec["secretObjects"] = secret_objects
        return self.create(f"/apis/secrets-store.csi.x-k8s.io/{version}/namespaces/{namespace}/secretproviderclasses",
                           {"apiVersion": f"secrets-store.csi.x-k8s.io/{version}", "kind": "SecretProviderClass",
                            "metadata": {"name": name}, "spec": spec})

    # -------------------------------------------------------------- control API

    def control(self, method, path, body=None):
        u = urllib.parse.urlsplit(self.control_url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = json.loads(r.read() or b"null")
            if r.status != 200:
                raise AssertionError(f"control {method} {path} -> {r.status}: {data}")
            return data
        finally:
            c.close()

    def compact(self, resource_version=None) -> int:
        """Forgets watch history up to now (or the given RV); returns the compaction RV."""
        return self.control("POST", "/compact", {"resourceVersion": resource_version} if resource_version else {})["compacted"]

    def drop_watches(self, abrupt=False):
        self.control("POST", "/drop-watches", {"abrupt": abrupt})

    def down(self, seconds=3600.0, mode="refuse"):
        """mode refuse: connections refused (and open ones reset); 503: every request answers 503;
        hang: connections accepted, requests and watch events held until the server is back."""
        self.control("POST", "/down", {"seconds": seconds, "mode": mode})

    def up(self):
        self.control("POST", "/up")

    def set_latency(self, seconds: float):
        self.control("POST", "/latency", {"seconds": seconds})

    def set_bookmark_interval(self, seconds: float):
        self.control("POST", "/bookmark-interval", {"seconds": seconds})

    def inject_conflicts(self, resource, count=1, name=None, namespace=None, verbs=("update", "patch")):
        """The next `count` matching requests answer 409 Conflict."""
        return self.control("POST", "/conflicts", {"resource": resource, "count": count, "name": name,
                                                   "namespace": namespace, "verbs": list(verbs)})

    def inject_fault(self, resource, code, count=1, verbs=("get",), name=None, namespace=None, retry_after=None,
                     delay=0.0):
        """The next `count` (-1: all, until clear_faults) matching requests wait
        `delay` seconds, then answer `code` (429, 500, 503, ...; 0: answer normally)."""
        return self.control("POST", "/faults", {"resource": resource, "count": count, "code": code,
                                                "verbs": list(verbs), "name": name, "namespace": namespace,
                                                "retryAfter": retry_after, "delay": delay})

    def slow_down(self, resource, seconds, verbs=("create", "update", "patch"), count=-1, **kw):
        """Matching requests take `seconds` longer (and succeed)."""
        return self.inject_fault(resource, 0, count=count, verbs=verbs, delay=seconds, **kw)

    def clear_faults(self):
        self.control("DELETE", "/faults")

    def add_token(self, user="test-user", rules=None, groups=None, rbac=False, token=None) -> str:
        """Adds a bearer token allowed `rules` (RBAC PolicyRules, optionally
        with "namespaces"); rbac=True also honours stored Roles/Bindings."""
        body = {"user": user, "rules": rules or [], "groups": groups or ["system:authenticated"], "rbac": rbac}
        if token:
            body["token"] = token
        return self.control("POST", "/tokens", body)["token"]

    def add_service_account_token(self, namespace, name, rules=None, rbac=True) -> str:
        return self.add_token(f"system:serviceaccount:{namespace}:{name}", rules=rules, rbac=rbac,
                              groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                                      "system:authenticated"])

    def client_cert(self, user="test-user", groups=()) -> dict:
        """A client certificate (CN=user, O=groups) signed by the server's CA:
        {"cert", "key", "kubeconfig"} paths. Certificate users are authorized
        by the stored RBAC objects (group system:masters: everything)."""
        return self.control("POST", "/client-certs", {"user": user, "groups": list(groups)})

    def rotate_token(self, old_token) -> str:
        """A new token for the same user and permissions; the old one expires (401)."""
        entry = next(t for t in self.control("GET", "/tokens")["tokens"] if t["token"] == old_token)
        new = self.add_token(entry.get("user", ""), rules=entry.get("rules"), groups=entry.get("groups"),
                             rbac=entry.get("rbac", False))
        self.expire_token(old_token)
        return new

    def in_cluster_files(self, directory: Path, token: str, namespace="kube-system") -> dict:
        """Writes token, ca.crt and namespace as a pod's service-account volume
        has them; answers the environment a pod gets (KUBERNETES_SERVICE_HOST/PORT)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "token").write_text(token)
        (d / "ca.crt").write_bytes(Path(self.ca).read_bytes())
        (d / "namespace").write_text(namespace)
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port),
                "KUBERNETES_SERVICE_PORT_HTTPS": str(self.port)}

    def expire_token(self, token):
        return self.control("POST", "/tokens/expire", {"token": token})["expired"]

    def requests(self, since=0) -> dict:
        """{"requests": [{method, path, query, verb, resource, subresource, namespace, name, user, code}],
        "counts": {"get secretproviderclasses": n, ...}, "next": index for since=}"""
        return self.control("GET", f"/requests?since={since}")

    def clear_requests(self):
        self.control("DELETE", "/requests")

    def run_gc(self):
        self.control("POST", "/gc")

    def pause_gc(self, paused=True):
        self.control("POST", "/gc", {"paused": paused})

    def state(self) -> dict:
        return self.control("GET", "/state")

    # -------------------------------------------------------------- lifecycle

    def stop(self):
        for w in self._watches:
            w.close()
        for p in self._bg:
            if p.poll() is None:
                p.kill()
            try:
                p.communicate(timeout=5)
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _die_with_parent():
    """SIGTERM the server if the test process dies without stopping it."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def start_kube_api(state_dir: Path, *extra_args: str, preload=("secrets-store",), tls_dir: Path | None = None) -> KubeAPI:
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(SERVER), "--port", "0", "--state-dir", str(state_dir)]
    for p in preload:
        cmd += ["--preload-crds", p]
    if tls_dir:
        cmd += ["--tls-dir", str(tls_dir)]
    if os.environ.get("KUBEAPI_VERBOSE"):
        cmd.append("--verbose")
    if os.environ.get("KUBEAPI_HTTP2") and "--http2" not in extra_args:
        cmd.append("--http2")
    cmd += list(extra_args)
    log = open(state_dir / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    log.close()
    info_path = state_dir / "server.json"
    deadline = time.monotonic() + START_TIMEOUT
    while not info_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the test API server did not start:\n" +
                               (state_dir / "server.log").read_text(errors="replace"))
        time.sleep(0.01)
    api = KubeAPI(state_dir, proc, json.loads(info_path.read_text()))
    api._bg = []
    return api


@pytest.fixture(scope="session")
def kubeapi_tls_dir():
    """One CA and serving certificate for the whole session (generation is cheap, reuse is cheaper)."""
    d = Path(tempfile.mkdtemp(prefix="kubeapi-tls-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def kube_api_factory(kubeapi_tls_dir):
    servers: list[KubeAPI] = []
    dirs: list[Path] = []

    def start(*extra_args, preload=("secrets-store",)) -> KubeAPI:
        d = Path(tempfile.mkdtemp(prefix="kubeapi-"))
        dirs.append(d)
        api = start_kube_api(d, *extra_args, preload=preload, tls_dir=kubeapi_tls_dir)
        servers.append(api)
        return api

    try:
        yield start
    finally:
        for s in servers:
            s.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def kube_api(kube_api_factory) -> KubeAPI:
    """A fresh test API server with the secrets-store CRDs preloaded."""
    return kube_api_factory()
