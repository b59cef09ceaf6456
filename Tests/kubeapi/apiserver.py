#!/usr/bin/env python3
"""A test Kubernetes API server: what kube-apiserver v1.35 does for the driver,
the operator and kubectl, in one Python process, with fault injection.

    python Tests/kubeapi/apiserver.py --port 0 --state-dir DIR [--preload-crds secrets-store]

Writes into DIR: ca.crt, admin-token, kubeconfig, tokens.json (re-read when it
changes), and server.json last (url, control_url, ports, paths) as the signal
that it is serving. README.md next to this file lists what it implements and
what it does not.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import os
import random
import secrets as pysecrets
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kubeapi_util import (APIError, FieldSelector, LabelSelector, already_exists, apply_merge,  # noqa: E402
                          b64_ok, bad_request, conflict, forbidden, gone, internal, invalid, json_merge_patch,
                          json_patch, meta, metadata_problems, name_problem, not_found, now_rfc3339,
                          path_not_found, pb_decode_object, prune_and_validate, secret_key_ok,
                          strategic_merge_patch, unauthorized)

try:
    import yaml
except ImportError:  # JSON bodies still work; apply-patch+yaml needs it
    yaml = None

VERBS_ALL = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

# ============================================================== resources


class Resource:
    def __init__(self, group, version, plural, kind, namespaced=True, short=(), singular=None, status=False,
                 generation=False, name_rule="subdomain", return_deleted=False, unconditional=True,
                 fields=(), crd=None, categories=(), verbs=None, storage=None, schema=None, columns=None):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced = namespaced
        self.short = list(short)
        self.singular = singular or kind.lower()
        self.status = status
        self.generation = generation
        self.name_rule = name_rule
        self.return_deleted = return_deleted
        self.unconditional = unconditional
        self.fields = {"metadata.name", "metadata.namespace"} | set(fields) if namespaced else \
            {"metadata.name"} | set(fields)
        self.crd = crd  # CRD name for custom resources
        self.categories = list(categories)
        self.verbs = verbs or VERBS_ALL
        self.storage = storage or (group, plural)
        self.schema = schema
        self.columns = columns or []

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    def gr(self):
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def external(self, obj: dict) -> dict:
        """The object as this group/version shows it (shallow copy)."""
        out = dict(obj)
        if self.group == "events.k8s.io":
            out = event_to_events_v1(out)
        out["apiVersion"] = self.api_version
        out["kind"] = self.kind
        # keep apiVersion/kind first, as the real server's JSON does
        return {"apiVersion": out.pop("apiVersion"), "kind": out.pop("kind"), **out}

    def internal(self, obj: dict) -> dict:
        if self.group == "events.k8s.io":
            obj = event_from_events_v1(obj)
        return obj


_EV_RENAMES = [("note", "message"), ("regarding", "involvedObject"), ("deprecatedCount", "count"),
               ("deprecatedSource", "source"), ("deprecatedFirstTimestamp", "firstTimestamp"),
               ("deprecatedLastTimestamp", "lastTimestamp"), ("reportingController", "reportingComponent")]


def event_to_events_v1(obj):
    out = dict(obj)
    for new, old in _EV_RENAMES:
        if old in out:
            out[new] = out.pop(old)
    return out


def event_from_events_v1(obj):
    out = dict(obj)
    for new, old in _EV_RENAMES:
        if new in out:
            out[old] = out.pop(new)
    return out


POD_FIELDS = ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
              "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"]
EVENT_FIELDS = ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                "reason", "reportingComponent", "source", "type"]


def builtin_resources():
    R = Resource
    return [
        R("", "v1", "pods", "Pod", short=["po"], status=True, return_deleted=True, fields=POD_FIELDS,
          categories=["all"]),
        R("", "v1", "secrets", "Secret", fields=["type"]),
        R("", "v1", "configmaps", "ConfigMap", short=["cm"]),
        R("", "v1", "events", "Event", short=["ev"], fields=EVENT_FIELDS),
        R("", "v1", "namespaces", "Namespace", namespaced=False, short=["ns"], status=True, name_rule="label",
          fields=["status.phase"], return_deleted=True),
        R("", "v1", "serviceaccounts", "ServiceAccount", short=["sa"], return_deleted=True),
        R("", "v1", "services", "Service", short=["svc"], status=True, name_rule="label", categories=["all"]),
        R("", "v1", "nodes", "Node", namespaced=False, short=["no"], status=True, fields=["spec.unschedulable"]),
        R("apps", "v1", "daemonsets", "DaemonSet", short=["ds"], status=True, generation=True, categories=["all"]),
        R("apps", "v1", "deployments", "Deployment", short=["deploy"], status=True, generation=True,
          categories=["all"]),
        R("rbac.authorization.k8s.io", "v1", "roles", "Role", name_rule="path"),
        R("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", name_rule="path"),
        R("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False, name_rule="path"),
        R("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False,
          name_rule="path"),
        R("storage.k8s.io", "v1", "csidrivers", "CSIDriver", namespaced=False),
        R("events.k8s.io", "v1", "events", "Event", short=["ev"], storage=("", "events"),
          fields=EVENT_FIELDS),
        R("coordination.k8s.io", "v1", "leases", "Lease"),
        R("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
          namespaced=False, short=["crd", "crds"], status=True, generation=True),
        R("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview",
          namespaced=False, verbs=["create"]),
    ]


class Registry:
    """Served group/version/resources; custom resources come and go with CRDs."""

    def __init__(self):
        self.by_gvr: dict[tuple, Resource] = {}
        self.group_order: list[str] = []
        self.preferred: dict[str, str] = {}
        self.group_versions: dict[str, list[str]] = {}
        for r in builtin_resources():
            self.add(r)

    def add(self, r: Resource, preferred=False):
        self.by_gvr[(r.group, r.version, r.plural)] = r
        if r.group not in self.group_versions:
            self.group_order.append(r.group)
            self.group_versions[r.group] = []
        if r.version not in self.group_versions[r.group]:
            self.group_versions[r.group].append(r.version)
        if preferred or r.group not in self.preferred:
            self.preferred[r.group] = r.version

    def remove_crd(self, crd_name):
        for k in [k for k, r in self.by_gvr.items() if r.crd == crd_name]:
            del self.by_gvr[k]
        for g in list(self.group_versions):
            vs = [v for v in self.group_versions[g] if any(k[0] == g and k[1] == v for k in self.by_gvr)]
            if not vs:
                del self.group_versions[g]
                self.group_order.remove(g)
                self.preferred.pop(g, None)
            else:
                self.group_versions[g] = vs
                if self.preferred.get(g) not in vs:
                    self.preferred[g] = vs[0]

    def get(self, group, version, plural) -> Resource | None:
        return self.by_gvr.get((group, version, plural))

    def resources_in(self, group, version):
        return [r for (g, v, _), r in self.by_gvr.items() if g == group and v == version]

    def for_storage(self, skey) -> Resource | None:
        g, plural = skey
        v = self.preferred.get(g)
        r = self.by_gvr.get((g, v, plural))
        if r is None:
            for (gg, _, pp), rr in self.by_gvr.items():
                if gg == g and pp == plural:
                    return rr
        return r

    def by_kind(self, api_version, kind) -> Resource | None:
        g, _, v = api_version.rpartition("/")
        for r in self.by_gvr.values():
            if r.group == g and r.version == v and r.kind == kind:
                return r
        return None


def _version_priority(v):
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first."""
    import re
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", v)
    if not m:
        return (3, 0, 0, v)
    kind = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
    return (kind, -int(m.group(1)), -int(m.group(3) or 0), v)


# ============================================================== store


class WatchEvent:
    __slots__ = ("rv", "type", "skey", "obj", "prev")

    def __init__(self, rv, typ, skey, obj, prev):
        self.rv, self.type, self.skey, self.obj, self.prev = rv, typ, skey, obj, prev


class Store:
    """All objects, one global resourceVersion counter, the event history the
    watches read from (compactable). Stored dicts are never mutated in place."""

    def __init__(self, history_limit=200000):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 100
        self.data: dict[tuple, dict[tuple, dict]] = {}
        self.uids: dict[str, tuple] = {}
        self.history: list[WatchEvent] = []
        self.hbase = 0  # absolute index of history[0]
        self.compacted = self.rv
        self.history_limit = history_limit

    def bucket(self, skey):
        return self.data.setdefault(skey, {})

    def get(self, skey, ns, name):
        return self.data.get(skey, {}).get((ns or "", name))

    def put(self, skey, obj, typ):
        """Stores obj (ADDED/MODIFIED), assigning a new resourceVersion."""
        with self.cond:
            self.rv += 1
            m = dict(obj["metadata"])
            m["resourceVersion"] = str(self.rv)
            obj = dict(obj)
            obj["metadata"] = m
            key = (m.get("namespace", ""), m["name"])
            prev = self.bucket(skey).get(key)
            self.bucket(skey)[key] = obj
            self.uids[m["uid"]] = (skey, key[0], key[1])
            self._record(WatchEvent(self.rv, typ, skey, obj, prev))
            return obj

    def remove(self, skey, ns, name):
        with self.cond:
            prev = self.bucket(skey).pop((ns or "", name), None)
            if prev is None:
                return None
            self.rv += 1
            self.uids.pop(prev["metadata"].get("uid"), None)
            gone_obj = dict(prev)
            gone_obj["metadata"] = dict(prev["metadata"], resourceVersion=str(self.rv))
            self._record(WatchEvent(self.rv, "DELETED", skey, gone_obj, prev))
            return gone_obj

    def _record(self, ev):
        self.history.append(ev)
        if len(self.history) > self.history_limit:
            self.compact(self.history[len(self.history) // 2].rv)
        self.cond.notify_all()

    def compact(self, upto=None):
        """Forgets history up to resourceVersion `upto` (default: now)."""
        with self.cond:
            upto = self.rv if upto is None else upto
            n = 0
            while n < len(self.history) and self.history[n].rv <= upto:
                n += 1
            del self.history[:n]
            self.hbase += n
            self.compacted = max(self.compacted, upto)
            self.cond.notify_all()
            return self.compacted

    def snapshot(self, skey, at_rv):
        """The bucket as it was at resourceVersion at_rv (410 when compacted)."""
        with self.lock:
            if at_rv < self.compacted:
                raise gone(f"too old resource version: {at_rv} ({self.compacted})")
            state = dict(self.bucket(skey))
            for ev in reversed(self.history):
                if ev.rv <= at_rv:
                    break
                if ev.skey != skey:
                    continue
                key = (ev.obj["metadata"].get("namespace", ""), ev.obj["metadata"]["name"])
                if ev.prev is None:
                    state.pop(key, None)
                else:
                    state[key] = ev.prev
            return state


# ============================================================== authentication / authorization


class Auth:
    """Bearer tokens from tokens.json ({"tokens": [{token, user, groups, rules,
    rbac, expired}]}), re-read when the file changes. A token is allowed what
    its rules say (RBAC PolicyRule shape plus optional "namespaces"), plus, with
    "rbac": true, what the stored Roles/ClusterRoles and bindings grant."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.mtime = None
        self.tokens: dict[str, dict] = {}

    def load(self):
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        key = (st.st_mtime_ns, st.st_size)
        if key == self.mtime:
            return
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return  # half-written: keep the old set
        self.tokens = {t["token"]: t for t in doc.get("tokens", []) if t.get("token")}
        self.mtime = key

    def save(self, entries: list[dict]):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"tokens": entries}, indent=1))
        os.replace(tmp, self.path)

    def modify(self, fn):
        with self.lock:
            self.mtime = None
            self.load()
            entries = list(self.tokens.values())
            result = fn(entries)
            self.save(entries)
            self.mtime = None
            self.load()
            return result

    def authenticate(self, header: str | None):
        if not header or not header.startswith("Bearer "):
            raise unauthorized()
        tok = header[7:].strip()
        with self.lock:
            self.load()
            t = self.tokens.get(tok)
        if not t or t.get("expired"):
            raise unauthorized()
        return t


def rule_matches(rule, verb, group, resource, namespace, name):
    def has(lst, v):
        return lst is not None and ("*" in lst or v in lst)
    if not has(rule.get("verbs"), verb):
        return False
    if not has(rule.get("apiGroups"), group):
        return False
    res = rule.get("resources") or []
    if not ("*" in res or resource in res or ("/" in resource and "*/" + resource.split("/", 1)[1] in res)
            or ("/" not in resource and False)):
        return False
    rn = rule.get("resourceNames")
    if rn and (not name or name not in rn):
        return False
    nss = rule.get("namespaces")
    if nss is not None and "*" not in nss:
        if not namespace or namespace not in nss:
            return False
    return True


# ============================================================== the server


def rand_suffix(n=5):
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(random.choice(alphabet) for _ in range(n))


class Fault:
    def __init__(self, spec: dict):
        self.verbs = set(spec.get("verbs") or ["update", "patch"])
        self.resource = spec.get("resource")
        self.namespace = spec.get("namespace")
        self.name = spec.get("name")
        self.count = int(spec.get("count", 1))  # -1: until removed
        self.code = int(spec.get("code", 409) or 0)  # 0: no error (a delay only)
        self.delay = float(spec.get("delay") or 0)
        self.retry_after = spec.get("retryAfter")

    def matches(self, verb, res, ns, name):
        return (verb in self.verbs and (self.resource in (None, "*", res.plural, res.gr()))
                and (self.namespace is None or self.namespace == ns)
                and (self.name is None or self.name == name))

    def describe(self):
        return {"verbs": sorted(self.verbs), "resource": self.resource, "namespace": self.namespace,
                "name": self.name, "count": self.count, "code": self.code, "delay": self.delay}


class KubeAPIServer:
    def __init__(self, state_dir: Path, port=0, control_port=0, host="127.0.0.1", tls_dir: Path | None = None,
                 bookmark_interval=1.0, gc_interval=1.0, preload=(), verbose=False, auto_namespaces=False,
                 history_limit=200000, http2=False, pod_grace=False, lenient_fields=False):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        self.control_port = control_port
        self.tls_dir = Path(tls_dir) if tls_dir else self.state_dir
        self.bookmark_interval = bookmark_interval
        self.gc_interval = gc_interval
        self.verbose = verbose
        self.auto_namespaces = auto_namespaces
        self.http2 = http2
        self.pod_grace = pod_grace
        self.lenient_fields = lenient_fields
        self.pod_deadlines: dict[tuple, float] = {}
        self.registry = Registry()
        self.store = Store(history_limit)
        self.auth = Auth(self.state_dir / "tokens.json")
        self.stopping = threading.Event()
        self.watch_epoch = 0
        self.down_until = 0.0
        self.down_mode = None
        self.latency = 0.0
        self.faults: list[Fault] = []
        self.faults_lock = threading.Lock()
        self.requests: list[dict] = []
        self.requests_lock = threading.Lock()
        self.conns: dict = {}  # socket -> is a control connection
        self.conns_lock = threading.Lock()
        self.threads: set = set()
        self.threads_lock = threading.Lock()
        self.gc_wakeup = threading.Event()
        self.gc_paused = False
        self.applied: dict[tuple, dict] = {}  # (skey, ns, name, manager) -> last applied config
        self.listener = None
        self.listener_lock = threading.Lock()
        self.preload = preload

    # ------------------------------------------------------------ startup

    def _bootstrap(self, preload):
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._create_namespace_direct(ns)
        cr = self.registry.get("rbac.authorization.k8s.io", "v1", "clusterroles")
        crb = self.registry.get("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
        boot = {"kubernetes.io/bootstrapping": "rbac-defaults"}
        self.create(cr, "", {"metadata": {"name": "cluster-admin", "labels": boot}, "rules": [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]}]}, {}, None)
        self.create(crb, "", {"metadata": {"name": "cluster-admin", "labels": boot},
                              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                          "name": "cluster-admin"},
                              "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                            "name": "system:masters"}]}, {}, None)
        agg = "rbac.authorization.k8s.io/aggregate-to-"
        common = ["pods", "configmaps", "events", "serviceaccounts", "services", "daemonsets", "deployments",
                  "leases"]
        groups = ["", "apps", "events.k8s.io", "coordination.k8s.io"]
        self.create(cr, "", {"metadata": {"name": "system:aggregate-to-view",
                                          "labels": {**boot, agg + "view": "true"}},
                             "rules": [{"apiGroups": groups, "resources": common + ["namespaces"],
                                        "verbs": ["get", "list", "watch"]}]}, {}, None)
        self.create(cr, "", {"metadata": {"name": "system:aggregate-to-edit",
                                          "labels": {**boot, agg + "edit": "true"}},
                             "rules": [{"apiGroups": groups, "resources": common + ["secrets"],
                                        "verbs": ["create", "delete", "deletecollection", "patch", "update"]},
                                       {"apiGroups": [""], "resources": ["secrets"],
                                        "verbs": ["get", "list", "watch"]}]}, {}, None)
        self.create(cr, "", {"metadata": {"name": "system:aggregate-to-admin",
                                          "labels": {**boot, agg + "admin": "true"}},
                             "rules": [{"apiGroups": ["rbac.authorization.k8s.io"],
                                        "resources": ["roles", "rolebindings"], "verbs": ["*"]}]}, {}, None)
        for name, levels in (("view", ["view"]), ("edit", ["edit", "view"]), ("admin", ["admin", "edit", "view"])):
            self.create(cr, "", {"metadata": {"name": name, "labels": boot},
                                 "aggregationRule": {"clusterRoleSelectors": [
                                     {"matchLabels": {agg + lv: "true"}} for lv in levels]}}, {}, None)
        for item in preload:
            for crd in preload_crds(item):
                res = self.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
                try:
                    self.create(res, "", crd, {}, user=None)
                except APIError as e:
                    if e.code != 409:
                        raise

    def _create_namespace_direct(self, ns):
        res = self.registry.get("", "v1", "namespaces")
        self.create(res, "", {"metadata": {"name": ns}}, {}, user=None)

    def make_tls(self):
        d = self.tls_dir
        d.mkdir(parents=True, exist_ok=True)
        ca, ca_key, crt, key = d / "ca.crt", d / "ca.key", d / "server.crt", d / "server.key"
        if not (ca.exists() and crt.exists() and key.exists()):
            tmp = d / f".gen-{os.getpid()}"
            tmp.mkdir(exist_ok=True)
            ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            subprocess.run(["openssl", "req", "-x509", *ec, "-keyout", str(tmp / "ca.key"), "-out", str(tmp / "ca.crt"),
                            "-days", "3650", "-subj", "/CN=test-kube-apiserver-ca",
                            "-addext", "basicConstraints=critical,CA:TRUE",
                            "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                           check=True, capture_output=True)
            subprocess.run(["openssl", "req", "-x509", "-CA", str(tmp / "ca.crt"), "-CAkey", str(tmp / "ca.key"), *ec,
                            "-keyout", str(tmp / "server.key"), "-out", str(tmp / "server.crt"), "-days", "825",
                            "-subj", "/CN=kube-apiserver",
                            "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes,"
                                       "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
                                       "DNS:kubernetes.default.svc.cluster.local",
                            "-addext", "basicConstraints=CA:FALSE",
                            "-addext", "extendedKeyUsage=serverAuth"],
                           check=True, capture_output=True)
            for f in ("ca.key", "ca.crt", "server.key", "server.crt"):
                os.replace(tmp / f, d / f)
            tmp.rmdir()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        ctx.load_verify_locations(str(ca))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # client certificates authenticate when presented
        ctx.set_alpn_protocols(["h2", "http/1.1"] if self.http2 else ["http/1.1"])
        self.ssl_ctx = ctx
        self.ca_path = ca
        if ca.resolve() != (self.state_dir / "ca.crt").resolve():
            (self.state_dir / "ca.crt").write_bytes(ca.read_bytes())
            self.ca_path = self.state_dir / "ca.crt"

    def start(self):
        t0 = time.monotonic()
        self.make_tls()
        self._bootstrap(self.preload)
        self.listener = self._listen(self.port)
        self.port = self.listener.getsockname()[1]
        self.control_listener = self._listen(self.control_port)
        self.control_port = self.control_listener.getsockname()[1]
        self.url = f"https://{self.host}:{self.port}"
        self.control_url = f"http://127.0.0.1:{self.control_port}"
        admin = pysecrets.token_hex(16)
        self.admin_token = admin
        self.auth.save([{"token": admin, "user": "admin", "groups": ["system:masters", "system:authenticated"],
                         "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}])
        (self.state_dir / "admin-token").write_text(admin)
        self.write_kubeconfig(self.state_dir / "kubeconfig", admin, "admin")
        for target, fn in ((self._accept_loop, (self.listener, False)),
                           (self._accept_loop, (self.control_listener, True)),
                           (self._gc_loop, ())):
            t = threading.Thread(target=target, args=fn, daemon=True)
            t.start()
            self.threads.add(t)
        info = {"url": self.url, "control_url": self.control_url, "port": self.port,
                "control_port": self.control_port, "ca": str(self.ca_path),
                "admin_token": admin, "kubeconfig": str(self.state_dir / "kubeconfig"),
                "tokens_file": str(self.auth.path), "pid": os.getpid(),
                "startup_seconds": round(time.monotonic() - t0, 3)}
        tmp = self.state_dir / "server.json.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, self.state_dir / "server.json")
        (self.state_dir / "port").write_text(str(self.port))
        return info

    def write_kubeconfig(self, path: Path, token: str, user: str):
        ca = base64.b64encode(self.ca_path.read_bytes()).decode()
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "test",
               "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
               "users": [{"name": user, "user": {"token": token}}],
               "contexts": [{"name": "test", "context": {"cluster": "test", "user": user, "namespace": "default"}}]}
        path.write_text(json.dumps(cfg, indent=1))

    def _listen(self, port, rebind=False):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host if not rebind else self.host, port))
        s.listen(128)
        return s

    def stop(self):
        self.stopping.set()
        with self.store.cond:
            self.store.cond.notify_all()
        self.gc_wakeup.set()
        for s in (self.listener, getattr(self, "control_listener", None)):
            try:
                s and s.close()
            except OSError:
                pass
        self._reset_connections(control=True)
        deadline = time.monotonic() + 5
        with self.threads_lock:
            threads = list(self.threads)
        for t in threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    def _reset_connections(self, control=False):
        with self.conns_lock:
            conns = [c for c, is_control in self.conns.items() if control or not is_control]
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------ connections

    def _accept_loop(self, listener, control):
        while not self.stopping.is_set():
            lst = self.control_listener if control else self.listener
            try:
                r, _, _ = select.select([lst], [], [], 0.2)
            except (OSError, ValueError):
                r = []
                if not control and self.down_mode == "refuse":
                    time.sleep(0.05)
                    self._maybe_come_back()
                    continue
                if self.stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            if not control and self.down_mode == "refuse":
                self._maybe_come_back()
            if not r:
                continue
            try:
                sock, addr = lst.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve_conn, args=(sock, addr, control), daemon=True)
            with self.threads_lock:
                self.threads.add(t)
            t.start()

    def _maybe_come_back(self):
        with self.listener_lock:
            if self.down_mode == "refuse" and time.monotonic() >= self.down_until:
                for _ in range(50):
                    try:
                        self.listener = self._listen(self.port, rebind=True)
                        break
                    except OSError:
                        time.sleep(0.1)
                self.down_mode = None

    def go_down(self, seconds, mode):
        with self.listener_lock:
            self.down_until = time.monotonic() + seconds
            self.down_mode = mode
            if mode == "refuse":
                try:
                    self.listener.close()
                except OSError:
                    pass
                self._reset_connections()
        if mode != "hang":
            with self.store.cond:
                self.watch_epoch += 1
                self.store.cond.notify_all()

    def come_up(self):
        with self.listener_lock:
            self.down_until = 0
        if self.down_mode == "refuse":
            self._maybe_come_back()
        self.down_mode = None

    def _serve_conn(self, sock, addr, control):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not control:
                sock.settimeout(10)
                sock = self.ssl_ctx.wrap_socket(sock, server_side=True)
            sock.settimeout(600)
            with self.conns_lock:
                self.conns[sock] = control
            if not control and sock.selected_alpn_protocol() == "h2":
                H2Conn(self, sock, addr).run()
            else:
                (ControlHandler if control else APIHandler)(sock, addr, self)
        except (OSError, ssl.SSLError, ValueError):
            pass
        except Exception:
            if self.verbose:
                traceback.print_exc()
        finally:
            with self.conns_lock:
                self.conns.pop(sock, None)
            try:
                sock.close()
            except OSError:
                pass
            with self.threads_lock:
                self.threads.discard(threading.current_thread())

    # ------------------------------------------------------------ request log and faults

    def log_request(self, entry):
        with self.requests_lock:
            entry["seq"] = len(self.requests)
            self.requests.append(entry)

    def client_cert(self, user: str, groups=()) -> dict:
        """A client certificate signed by the CA (CN=user, O=each group) and a kubeconfig using it."""
        d = self.state_dir / "client-certs"
        d.mkdir(exist_ok=True)
        stem = hashlib.sha256(json.dumps([user, list(groups)]).encode()).hexdigest()[:12]
        crt, key = d / f"{stem}.crt", d / f"{stem}.key"
        if not crt.exists():
            subj = "/CN=" + user.replace("/", "\\/") + "".join("/O=" + g.replace("/", "\\/") for g in groups)
            subprocess.run(["openssl", "req", "-x509", "-CA", str(self.tls_dir / "ca.crt"),
                            "-CAkey", str(self.tls_dir / "ca.key"), "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(crt),
                            "-days", "365", "-subj", subj, "-addext", "basicConstraints=CA:FALSE",
                            "-addext", "extendedKeyUsage=clientAuth"], check=True, capture_output=True)
        kc = d / f"{stem}.kubeconfig"
        ca = base64.b64encode(self.ca_path.read_bytes()).decode()
        kc.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user, "namespace": "default"}}]},
            indent=1))
        return {"cert": str(crt), "key": str(key), "kubeconfig": str(kc), "user": user, "groups": list(groups)}

    def take_fault(self, verb, res, ns, name):
        with self.faults_lock:
            for f in self.faults:
                if f.count != 0 and f.matches(verb, res, ns, name):
                    if f.count > 0:
                        f.count -= 1
                        if f.count == 0:
                            self.faults.remove(f)
                    return f
        return None

    # ------------------------------------------------------------ authorization

    def allowed(self, user, verb, group, resource, namespace, name):
        if user is None:
            return True
        if "system:masters" in (user.get("groups") or []):
            return True
        if verb == "create" and group == "authorization.k8s.io" and resource in (
                "selfsubjectaccessreviews", "selfsubjectrulesreviews"):
            return True  # system:basic-user, bound to every authenticated user
        for rule in user.get("rules") or []:
            if rule_matches(rule, verb, group, resource, namespace, name):
                return True
        if user.get("rbac"):
            return self._rbac_allows(user, verb, group, resource, namespace, name)
        return False

    def _rbac_allows(self, user, verb, group, resource, namespace, name):
        uname = user.get("user", "")
        groups = set(user.get("groups") or [])

        def subject_ok(subjects, binding_ns):
            for s in subjects or []:
                k = s.get("kind")
                if k == "User" and s.get("name") == uname:
                    return True
                if k == "Group" and s.get("name") in groups:
                    return True
                if k == "ServiceAccount" and uname == f"system:serviceaccount:{s.get('namespace') or binding_ns}:{s.get('name')}":
                    return True
            return False

        with self.store.lock:
            roles = self.store.bucket(("rbac.authorization.k8s.io", "roles"))
            croles = self.store.bucket(("rbac.authorization.k8s.io", "clusterroles"))

            def rules_of(ref, ns):
                if ref.get("kind") == "ClusterRole":
                    r = croles.get(("", ref.get("name")))
                else:
                    r = roles.get((ns, ref.get("name")))
                return (r or {}).get("rules") or []

            for crb in self.store.bucket(("rbac.authorization.k8s.io", "clusterrolebindings")).values():
                if subject_ok(crb.get("subjects"), ""):
                    for rule in rules_of(crb.get("roleRef") or {}, ""):
                        if rule_matches(rule, verb, group, resource, namespace, name):
                            return True
            if namespace:
                for (ns, _), rb in self.store.bucket(("rbac.authorization.k8s.io", "rolebindings")).items():
                    if ns == namespace and subject_ok(rb.get("subjects"), ns):
                        for rule in rules_of(rb.get("roleRef") or {}, ns):
                            if rule_matches(rule, verb, group, resource, namespace, name):
                                return True
        return False

    # ------------------------------------------------------------ object operations

    def _check_namespace(self, res, ns, creating=True):
        if not res.namespaced:
            return
        nsobj = self.store.get(("", "namespaces"), "", ns)
        if nsobj is None:
            if self.auto_namespaces:
                self._create_namespace_direct(ns)
                return
            raise not_found("namespaces", "", ns)
        if creating and nsobj["metadata"].get("deletionTimestamp"):
            raise forbidden(res.plural, res.group, "",
                            f"unable to create new content in namespace {ns} because it is being terminated")

    def validate(self, res, obj, old=None):
        m = obj["metadata"]
        name = m.get("name") or ""
        causes = []
        if not name:
            causes.append(("FieldValueRequired", "metadata.name", "Required value: name or generateName is required"))
        else:
            p = name_problem(name, res.name_rule)
            if p:
                causes.append(("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": {p}'))
        causes += metadata_problems(obj)
        causes += kind_problems(self, res, obj, old)
        if causes:
            raise invalid(res.kind, res.group, name, causes)

    def create(self, res, ns, body, params, user, dry_run=False, subresource=""):
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        decode_check(res, body)
        obj = res.internal(copy.deepcopy(body))
        self._check_kind(res, body)
        m = meta(obj)
        if res.namespaced:
            if m.get("namespace") and m["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            m["namespace"] = ns
        else:
            m.pop("namespace", None)
        if not m.get("name") and m.get("generateName"):
            m["name"] = m["generateName"] + rand_suffix()
        if m.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        for f in ("uid", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"):
            m.pop(f, None)
        with self.store.lock:
            self._check_namespace(res, ns)
            if res.crd and res.status:
                obj.pop("status", None)
            obj = self._prune(res, obj, params)
            prepare_create(self, res, obj)
            self.validate(res, obj)
            if self.store.get(res.storage, ns if res.namespaced else "", m["name"]) is not None:
                raise already_exists(res.plural, res.group, m["name"])
            m["uid"] = str(uuid.uuid4())
            m["creationTimestamp"] = now_rfc3339()
            if res.generation:
                m["generation"] = 1
            mf = managed_fields(res, params or {}, None, obj)
            if mf:
                m["managedFields"] = mf
            if dry_run:
                m["resourceVersion"] = ""
                return obj
            stored = self.store.put(res.storage, obj, "ADDED")
            after_write(self, res, None, stored)
            return stored

    def _check_kind(self, res, body):
        k = body.get("kind")
        av = body.get("apiVersion")
        if k and k != res.kind:
            raise bad_request(f"the API version in the data ({av}) does not match the expected API version "
                              f"({res.api_version})" if av and av != res.api_version else
                              f'the kind in the data ("{k}") does not match the expected kind ("{res.kind}")')
        if av and av != res.api_version:
            raise bad_request(f"the API version in the data ({av}) does not match the expected API version "
                              f"({res.api_version})")

    def _prune(self, res, obj, params=None):
        if res.crd and res.schema:
            errors = []
            pruned = []
            obj = prune_and_validate(obj, res.schema, "", errors, top=True, pruned=pruned)
            if pruned and (params or {}).get("fieldValidation") == "Strict":
                raise bad_request("strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in pruned))
            if errors:
                raise invalid(res.kind, res.group, (obj.get("metadata") or {}).get("name", ""), errors)
        return obj

    def update(self, res, ns, name, body, params, user, subresource="", dry_run=False, cur=None):
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        decode_check(res, body)
        new = res.internal(copy.deepcopy(body))
        self._check_kind(res, body)
        m = meta(new)
        if m.get("name") and m["name"] != name:
            raise bad_request(f"the name of the object ({m['name']}) does not match the name on the URL ({name})")
        if res.namespaced and m.get("namespace") and m["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        with self.store.lock:
            cur = self.store.get(res.storage, ns, name)
            if cur is None:
                raise not_found(res.plural, res.group, name)
            cm = cur["metadata"]
            rv = m.get("resourceVersion")
            if rv:
                if rv != cm["resourceVersion"]:
                    raise conflict(res.plural, res.group, name)
            elif not res.unconditional and subresource == "":
                raise invalid(res.kind, res.group, name, [("FieldValueInvalid", "metadata.resourceVersion",
                                                           "Invalid value: 0x0: must be specified for an update")])
            if m.get("uid") and m["uid"] != cm["uid"]:
                raise conflict(res.plural, res.group, name,
                               f"Precondition failed: UID in precondition: {m['uid']}, UID in object meta: {cm['uid']}")
            if subresource == "status":
                result = dict(cur)
                if "status" in new:
                    result["status"] = new["status"]
                else:
                    result.pop("status", None)
                result["metadata"] = dict(cm)
                if not res.crd:  # built-in status updates take labels/annotations? no: keep metadata
                    pass
                new = result
                m = new["metadata"]
            else:
                if res.status:
                    if "status" in cur:
                        new["status"] = cur["status"]
                    else:
                        new.pop("status", None)
                for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                          "generation"):
                    if f in cm:
                        m[f] = cm[f]
                    else:
                        m.pop(f, None)
                m["namespace"] = cm.get("namespace")
                if not res.namespaced:
                    m.pop("namespace", None)
                m["name"] = name
                m.pop("managedFields", None)
                if cm.get("deletionTimestamp"):
                    added = set(m.get("finalizers") or []) - set(cm.get("finalizers") or [])
                    if added:
                        raise invalid(res.kind, res.group, name, [(
                            "FieldValueForbidden", "metadata.finalizers",
                            f"Forbidden: no new finalizers can be added if the object is being deleted, found new "
                            f"finalizers {json.dumps(sorted(added))}")])
                new = self._prune(res, new, params)
                prepare_update(self, res, new, cur)
            m["resourceVersion"] = cm["resourceVersion"]
            if res.generation and subresource != "status" and _spec_changed(res, cur, new):
                m["generation"] = int(cm.get("generation") or 1) + 1
            self.validate(res, new, cur)
            if not m.get("finalizers"):
                m.pop("finalizers", None)
            if _same(new, cur):
                return cur
            mf = managed_fields(res, params, cm.get("managedFields"), new, subresource)
            if mf:
                m["managedFields"] = mf
            if dry_run:
                return new
            if cm.get("deletionTimestamp") and not m.get("finalizers"):
                gone_obj = self.store.remove(res.storage, ns, name)
                after_delete(self, res, gone_obj)
                return gone_obj
            stored = self.store.put(res.storage, new, "MODIFIED")
            after_write(self, res, cur, stored)
            return stored

    def patch(self, res, ns, name, ctype, raw, params, user, subresource=""):
        ctype = (ctype or "").split(";")[0].strip()
        try:
            if ctype == "application/apply-patch+yaml":
                if yaml is None:
                    raise bad_request("apply-patch+yaml needs PyYAML on the server")
                patch = yaml.safe_load(raw.decode() or "{}")
            else:
                patch = json.loads(raw.decode() or "null")
        except Exception as e:  # json/yaml decoding errors
            if ctype == "application/apply-patch+yaml":
                raise bad_request(f"error decoding YAML: {e}")
            raise bad_request(f"error decoding patch: {e}")
        for attempt in range(5):
            with self.store.lock:
                cur = self.store.get(res.storage, ns, name)
                if cur is None:
                    if ctype == "application/apply-patch+yaml":
                        manager = params.get("fieldManager")
                        if not manager:
                            raise bad_request("PATCH requests with server-side apply must specify fieldManager")
                        if not isinstance(patch, dict):
                            raise bad_request("invalid apply configuration")
                        body = copy.deepcopy(patch)
                        meta(body).setdefault("name", name)
                        created = self.create(res, ns, body, params, user, dry_run=params.get("dryRun") == "All")
                        self.applied[(res.storage, ns, name, manager)] = patch
                        return created, 201
                    raise not_found(res.plural, res.group, name)
                ext = res.external(cur)
                if ctype == "application/merge-patch+json":
                    if not isinstance(patch, dict):
                        raise bad_request("merge patch must be a JSON object")
                    result = json_merge_patch(ext, patch)
                elif ctype == "application/json-patch+json":
                    result = json_patch(ext, patch)
                elif ctype == "application/strategic-merge-patch+json":
                    if res.crd:
                        raise APIError(415, "UnsupportedMediaType",
                                       "the body of the request was in an unknown format - accepted media types "
                                       "include: application/json-patch+json, application/merge-patch+json, "
                                       "application/apply-patch+yaml")
                    if not isinstance(patch, dict):
                        raise bad_request("strategic merge patch must be a JSON object")
                    result = strategic_merge_patch(ext, patch)
                elif ctype == "application/apply-patch+yaml":
                    manager = params.get("fieldManager")
                    if not manager:
                        raise bad_request("PATCH requests with server-side apply must specify fieldManager")
                    if not isinstance(patch, dict):
                        raise bad_request("invalid apply configuration")
                    pm = patch.get("metadata") or {}
                    if pm.get("name") and pm["name"] != name:
                        raise bad_request(f"the name of the object ({pm['name']}) does not match the name on the URL ({name})")
                    prev = self.applied.get((res.storage, ns, name, manager))
                    applied = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
                    prev_applied = {k: v for k, v in (prev or {}).items() if k not in ("apiVersion", "kind")}
                    result = apply_merge(ext, applied, prev_applied)
                    result["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"] \
                        if not pm.get("resourceVersion") else pm["resourceVersion"]
                else:
                    raise APIError(415, "UnsupportedMediaType",
                                   f"the body of the request was in an unknown format - accepted media types include: "
                                   f"application/json-patch+json, application/merge-patch+json, "
                                   f"application/apply-patch+yaml" + ("" if res.crd else
                                                                     ", application/strategic-merge-patch+json"))
                if not isinstance(result, dict):
                    raise bad_request("the patch did not produce an object")
                rm = meta(result)
                if not rm.get("resourceVersion"):
                    rm["resourceVersion"] = cur["metadata"]["resourceVersion"]
                out = self.update(res, ns, name, result, params, user, subresource,
                                  dry_run=params.get("dryRun") == "All")
                if ctype == "application/apply-patch+yaml":
                    self.applied[(res.storage, ns, name, params.get("fieldManager"))] = patch
                return out, 200
        raise conflict(res.plural, res.group, name)

    def delete(self, res, ns, name, opts, user, dry_run=False):
        opts = opts or {}
        with self.store.lock:
            cur = self.store.get(res.storage, ns, name)
            if cur is None:
                raise not_found(res.plural, res.group, name)
            cm = cur["metadata"]
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != cm["uid"]:
                raise conflict(res.plural, res.group, name,
                               f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {cm['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != cm["resourceVersion"]:
                raise conflict(res.plural, res.group, name,
                               f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                               f"ResourceVersion in object meta: {cm['resourceVersion']}")
            if res.storage == ("", "pods") and self.pod_grace and (cur.get("spec") or {}).get("nodeName"):
                grace = opts.get("gracePeriodSeconds")
                if grace is None:
                    grace = (cur.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                grace = int(grace)
                if grace > 0 and not dry_run:
                    if cm.get("deletionTimestamp"):
                        return cur, 200
                    new = dict(cur)
                    until = time.time() + grace
                    new["metadata"] = dict(cm, deletionTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                               time.gmtime(until)),
                                           deletionGracePeriodSeconds=grace)
                    self.pod_deadlines[(ns, name, cm["uid"])] = time.monotonic() + grace
                    return self.store.put(res.storage, new, "MODIFIED"), 200
            policy = opts.get("propagationPolicy")
            if opts.get("orphanDependents") is True:
                policy = "Orphan"
            fins = list(cm.get("finalizers") or [])
            if policy == "Foreground" and "foregroundDeletion" not in fins:
                fins.append("foregroundDeletion")
            if policy == "Orphan" and "orphan" not in fins:
                fins.append("orphan")
            if res.storage == ("", "namespaces") and "kubernetes" not in fins and not cm.get("deletionTimestamp"):
                fins_ns = True
            else:
                fins_ns = False
            if dry_run:
                return cur, 200
            if fins or fins_ns:
                if cm.get("deletionTimestamp") and fins == list(cm.get("finalizers") or []):
                    return cur, 202
                new = dict(cur)
                nm = dict(cm)
                nm["deletionTimestamp"] = cm.get("deletionTimestamp") or now_rfc3339()
                nm["deletionGracePeriodSeconds"] = 0
                if fins:
                    nm["finalizers"] = fins
                new["metadata"] = nm
                if fins_ns:
                    new["status"] = dict(new.get("status") or {}, phase="Terminating")
                stored = self.store.put(res.storage, new, "MODIFIED")
                self.gc_wakeup.set()
                return stored, 202
            gone_obj = self.store.remove(res.storage, ns, name)
            after_delete(self, res, gone_obj)
        self.gc_wakeup.set()
        if res.return_deleted or res.crd:
            return gone_obj, 200
        d = {"name": name, "kind": res.plural, "uid": cm["uid"]}
        if res.group:
            d["group"] = res.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d}, 200

    def list_objects(self, res, ns, lsel, fsel, at_rv=None):
        with self.store.lock:
            bucket = self.store.snapshot(res.storage, at_rv) if at_rv is not None else self.store.bucket(res.storage)
            out = []
            for (ons, name), obj in bucket.items():
                if res.namespaced and ns and ons != ns:
                    continue
                if lsel.matches(obj["metadata"].get("labels")) and fsel.matches(obj):
                    out.append(obj)
            out.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            return out

    # ------------------------------------------------------------ garbage collection, namespaces, finalizers

    def _gc_loop(self):
        while not self.stopping.is_set():
            self.gc_wakeup.wait(self.gc_interval)
            self.gc_wakeup.clear()
            if self.stopping.is_set():
                return
            if self.gc_paused:
                continue
            try:
                while self.gc_pass():
                    pass
            except Exception:
                traceback.print_exc()

    def gc_pass(self) -> bool:
        """One sweep; True when it changed something (run again to cascade)."""
        changed = False
        with self.store.lock:
            now = time.monotonic()
            for key, deadline in list(self.pod_deadlines.items()):
                ns, name, uid = key
                cur = self.store.get(("", "pods"), ns, name)
                if cur is None or cur["metadata"]["uid"] != uid:
                    del self.pod_deadlines[key]
                elif now >= deadline:  # the kubelet's grace period is over
                    del self.pod_deadlines[key]
                    self.delete(self.registry.get("", "v1", "pods"), ns, name, {"gracePeriodSeconds": 0}, None)
                    changed = True
            live_uids = self.store.uids
            items = [(skey, obj) for skey, b in self.store.data.items() for obj in b.values()]
            # owners being deleted in the foreground / orphaning
            deleting = {o["metadata"]["uid"]: (skey, o) for skey, o in items
                        if o["metadata"].get("deletionTimestamp")}
            dependents_of: dict[str, list] = {}
            for skey, obj in items:
                for ref in obj["metadata"].get("ownerReferences") or []:
                    dependents_of.setdefault(ref.get("uid"), []).append((skey, obj))
            for skey, obj in items:
                m = obj["metadata"]
                refs = m.get("ownerReferences") or []
                if not refs:
                    continue
                if self.store.get(skey, m.get("namespace", ""), m["name"]) is not obj:
                    continue
                solid = [r for r in refs if self._owner_present(r, m.get("namespace", ""))]
                res = self.registry.for_storage(skey)
                if res is None:
                    continue
                if not solid:
                    if m.get("deletionTimestamp"):
                        continue
                    try:
                        self.delete(res, m.get("namespace", ""), m["name"], {"propagationPolicy": "Background"},
                                    None)
                        changed = True
                    except APIError:
                        pass
                elif len(solid) != len(refs):
                    new = dict(obj)
                    new["metadata"] = dict(m, ownerReferences=solid)
                    self.store.put(skey, new, "MODIFIED")
                    changed = True
            for uid, (skey, owner) in deleting.items():
                om = owner["metadata"]
                fins = list(om.get("finalizers") or [])
                res = self.registry.for_storage(skey)
                deps = [(s, o) for s, o in dependents_of.get(uid, [])
                        if self.store.get(s, o["metadata"].get("namespace", ""), o["metadata"]["name"]) is o]
                if "orphan" in fins:
                    for s, o in deps:
                        new = dict(o)
                        new["metadata"] = dict(o["metadata"], ownerReferences=[
                            r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != uid])
                        if not new["metadata"]["ownerReferences"]:
                            new["metadata"].pop("ownerReferences")
                        self.store.put(s, new, "MODIFIED")
                    self._drop_finalizer(res, owner, "orphan")
                    changed = True
                elif "foregroundDeletion" in fins:
                    if deps:
                        for s, o in deps:
                            if not o["metadata"].get("deletionTimestamp"):
                                r = self.registry.for_storage(s)
                                try:
                                    self.delete(r, o["metadata"].get("namespace", ""), o["metadata"]["name"],
                                                {"propagationPolicy": "Foreground"}, None)
                                    changed = True
                                except APIError:
                                    pass
                    else:
                        self._drop_finalizer(res, owner, "foregroundDeletion")
                        changed = True
                if skey == ("", "namespaces"):
                    changed |= self._finish_namespace(owner)
        return changed

    def _owner_present(self, ref, ns):
        loc = self.store.uids.get(ref.get("uid"))
        if loc is None:
            return False
        skey, ons, _ = loc
        return ons == "" or ons == ns

    def _drop_finalizer(self, res, obj, fin):
        cur = self.store.get(res.storage, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if cur is None:
            return
        new = dict(cur)
        new["metadata"] = dict(cur["metadata"], finalizers=[f for f in cur["metadata"].get("finalizers") or []
                                                            if f != fin])
        self.update(res, new["metadata"].get("namespace", ""), new["metadata"]["name"], res.external(new), {}, None)

    def _finish_namespace(self, nsobj) -> bool:
        ns = nsobj["metadata"]["name"]
        remaining = 0
        changed = False
        for skey, b in list(self.store.data.items()):
            res = self.registry.for_storage(skey)
            if res is None or not res.namespaced:
                continue
            for (ons, name), obj in list(b.items()):
                if ons != ns:
                    continue
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.delete(res, ns, name, {"propagationPolicy": "Background"}, None)
                        changed = True
                    except APIError:
                        pass
        if remaining == 0 and not nsobj["metadata"].get("finalizers"):
            gone_obj = self.store.remove(("", "namespaces"), "", ns)
            return gone_obj is not None
        return changed


# ============================================================== kind-specific behaviour


_STRING_MAPS = {("", "secrets"): ["stringData"], ("", "configmaps"): ["data"]}


def decode_check(res, body):
    """What the real server's JSON decoding into typed objects refuses (400):
    wrong types in metadata, and non-string values in string maps."""
    what = f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}'

    def fail(field, got, want):
        raise bad_request(f"{what}: json: cannot unmarshal {got} into Go struct field {field} of type {want}")
    m = body.get("metadata")
    if m is None:
        return
    if not isinstance(m, dict):
        fail(f"{res.kind}.metadata", _jtype(m), "v1.ObjectMeta")
    for f in ("name", "namespace", "generateName", "resourceVersion", "uid"):
        if f in m and m[f] is not None and not isinstance(m[f], str):
            fail(f"ObjectMeta.metadata.{f}", _jtype(m[f]), "string")
    for f in ("labels", "annotations"):
        v = m.get(f)
        if v is None:
            continue
        if not isinstance(v, dict):
            fail(f"ObjectMeta.metadata.{f}", _jtype(v), f"map[string]string")
        for k, x in v.items():
            if x is not None and not isinstance(x, str):
                fail(f"ObjectMeta.metadata.{f}", _jtype(x), "string")
    if m.get("finalizers") is not None and (not isinstance(m["finalizers"], list) or
                                            any(not isinstance(x, str) for x in m["finalizers"])):
        fail("ObjectMeta.metadata.finalizers", "value", "[]string")
    if not res.crd:
        for f in _STRING_MAPS.get((res.group, res.plural), []) + (["data"] if res.plural == "secrets" and
                                                                   not res.group else []):
            v = body.get(f)
            if isinstance(v, dict):
                for k, x in v.items():
                    if x is not None and not isinstance(x, str):
                        fail(f"{res.kind}.{f}", _jtype(x), "string" if f != "data" or res.plural != "secrets"
                             else "[]uint8")


def _jtype(v):
    return {bool: "bool", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(v), "null")


def _spec_changed(res, old, new):
    def strip(o):
        return {k: v for k, v in o.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    if res.crd and not res.status:
        return strip(old) != strip(new) or (old.get("status") != new.get("status"))
    return strip(old) != strip(new)


def _same(a, b):
    def norm(o):
        o = dict(o)
        o.pop("apiVersion", None)
        o.pop("kind", None)
        o["metadata"] = {k: v for k, v in (o.get("metadata") or {}).items() if k != "managedFields"}
        return json.dumps(o, sort_keys=True)
    return norm(a) == norm(b)


def fields_v1(obj, top=True):
    """An approximation of a FieldsV1 set: every map key; lists as leaves."""
    out = {}
    for k, v in obj.items():
        if top and k in ("apiVersion", "kind"):
            continue
        if top and k == "metadata":
            mm = {f"f:{x}": (fields_v1(v[x], False) if isinstance(v[x], dict) else {})
                  for x in ("labels", "annotations", "ownerReferences", "finalizers") if x in v}
            if mm:
                out["f:metadata"] = mm
            continue
        out[f"f:{k}"] = fields_v1(v, False) if isinstance(v, dict) else {}
    return out


def managed_fields(res, params, old_entries, obj, subresource=""):
    """metadata.managedFields as the server keeps it: one entry per manager,
    operation and subresource (ownership itself is not tracked)."""
    manager = params.get("_manager")
    if not manager:
        return old_entries
    op = params.get("_operation", "Update")
    entry = {"manager": manager, "operation": op, "apiVersion": res.api_version, "time": now_rfc3339(),
             "fieldsType": "FieldsV1", "fieldsV1": fields_v1(obj)}
    if subresource:
        entry["subresource"] = subresource
    kept = [e for e in old_entries or [] if not (e.get("manager") == manager and e.get("operation") == op and
                                                 e.get("subresource", "") == subresource)]
    return kept + [entry]


def default_pod_spec(spec):
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if "serviceAccountName" in spec:
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(c, dict):
            continue
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        img = c.get("image") or ""
        tag = img.rsplit("/", 1)[-1]
        c.setdefault("imagePullPolicy", "Always" if (":" not in tag or tag.endswith(":latest")) and "@" not in img
                     else "IfNotPresent")
        c.setdefault("resources", {})
        for p in c.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
    for v in spec.get("volumes") or []:
        if isinstance(v, dict):
            if "secret" in v and isinstance(v["secret"], dict):
                v["secret"].setdefault("defaultMode", 420)
            if "configMap" in v and isinstance(v["configMap"], dict):
                v["configMap"].setdefault("defaultMode", 420)
            if "hostPath" in v and isinstance(v["hostPath"], dict):
                v["hostPath"].setdefault("type", "")


def prepare_create(server, res, obj):
    kind = (res.group, res.plural)
    if kind == ("", "secrets"):
        _secret_string_data(obj)
        obj.setdefault("type", "Opaque")
    elif kind == ("", "namespaces"):
        m = obj["metadata"]
        m.setdefault("labels", {})
        m["labels"]["kubernetes.io/metadata.name"] = m.get("name", "")
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
    elif kind == ("", "pods"):
        default_pod_spec(obj.setdefault("spec", {}))
        obj["spec"].setdefault("serviceAccountName", "default")
        obj["spec"].setdefault("serviceAccount", obj["spec"]["serviceAccountName"])
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif kind == ("apps", "daemonsets"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        spec.setdefault("revisionHistoryLimit", 10)
        default_pod_spec((spec.get("template") or {}).get("spec"))
        obj["status"] = {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                         "numberReady": 0}
    elif kind == ("apps", "deployments"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        default_pod_spec((spec.get("template") or {}).get("spec"))
        obj["status"] = {}
    elif kind == ("", "services"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if spec.get("clusterIP") != "None" and not spec.get("clusterIP"):
            n = random.randint(1, 65000)
            spec["clusterIP"] = f"10.96.{n // 254}.{n % 254 + 1}"
        if spec.get("clusterIP"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
        obj["status"] = {"loadBalancer": {}}
    elif kind == ("storage.k8s.io", "csidrivers"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("attachRequired", True)
        spec.setdefault("podInfoOnMount", False)
        spec.setdefault("requiresRepublish", False)
        spec.setdefault("storageCapacity", False)
        spec.setdefault("fsGroupPolicy", "ReadWriteOnceWithFSType")
        spec.setdefault("volumeLifecycleModes", ["Persistent"])
        spec.setdefault("seLinuxMount", False)
    elif kind == ("apiextensions.k8s.io", "customresourcedefinitions"):
        _crd_defaults(obj)
    elif kind == ("", "events"):
        obj.setdefault("reportingComponent", "")
        obj.setdefault("reportingInstance", "")
    elif kind == ("", "nodes"):
        obj.setdefault("status", {})


def prepare_update(server, res, new, old):
    kind = (res.group, res.plural)
    if kind == ("", "secrets"):
        _secret_string_data(new)
        new.setdefault("type", "Opaque")
    elif kind == ("", "namespaces"):
        new["metadata"].setdefault("labels", {})
        new["metadata"]["labels"]["kubernetes.io/metadata.name"] = new["metadata"]["name"]
        new["spec"] = old.get("spec")
    elif kind == ("apps", "daemonsets") or kind == ("apps", "deployments"):
        default_pod_spec(((new.get("spec") or {}).get("template") or {}).get("spec"))
    elif kind == ("", "pods"):
        default_pod_spec(new.get("spec"))
    elif kind == ("apiextensions.k8s.io", "customresourcedefinitions"):
        _crd_defaults(new)


def _secret_string_data(obj):
    sd = obj.pop("stringData", None)
    if isinstance(sd, dict):
        data = dict(obj.get("data") or {})
        for k, v in sd.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj["data"] = data


def kind_problems(server, res, obj, old):
    kind = (res.group, res.plural)
    out = []
    if kind == ("", "secrets") or kind == ("", "configmaps"):
        data = obj.get("data") or {}
        if not isinstance(data, dict):
            return [("FieldValueInvalid", "data", "Invalid value: must be a map")]
        total = 0
        for k, v in data.items():
            if not secret_key_ok(k):
                out.append(("FieldValueInvalid", "data", f'Invalid value: "{k}": a valid config key must consist '
                            "of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
                            "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"))
            if kind == ("", "secrets"):
                if not b64_ok(v):
                    raise bad_request(f"Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data "
                                      f"at input byte 0 (key {k!r})")
                total += len(base64.b64decode(v))
            else:
                total += len(v or "")
        if total > 1024 * 1024:
            out.append(("FieldValueTooLong", "data", "Too long: must have at most 1048576 bytes"))
        if old is not None and old.get("immutable"):
            if obj.get("data") != old.get("data") or obj.get("binaryData") != old.get("binaryData"):
                out.append(("FieldValueForbidden", "data", "Forbidden: field is immutable when `immutable` is set"))
            if not obj.get("immutable"):
                out.append(("FieldValueForbidden", "immutable", "Forbidden: field is immutable when `immutable` is set"))
        if kind == ("", "secrets"):
            t = obj.get("type")
            if old is not None and old.get("type") != t:
                out.append(("FieldValueInvalid", "type", f'Invalid value: "{t}": field is immutable'))
            if t == "kubernetes.io/tls":
                for k in ("tls.crt", "tls.key"):
                    if k not in data:
                        out.append(("FieldValueRequired", f"data[{k}]", "Required value"))
    elif kind == ("", "pods"):
        cs = (obj.get("spec") or {}).get("containers")
        if not cs:
            out.append(("FieldValueRequired", "spec.containers", "Required value"))
        for i, c in enumerate(cs or []):
            if not isinstance(c, dict) or not c.get("name"):
                out.append(("FieldValueRequired", f"spec.containers[{i}].name", "Required value"))
            elif not c.get("image"):
                out.append(("FieldValueRequired", f"spec.containers[{i}].image", "Required value"))
    elif kind in (("apps", "daemonsets"), ("apps", "deployments")):
        spec = obj.get("spec") or {}
        sel = spec.get("selector")
        tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
            out.append(("FieldValueRequired", "spec.selector", "Required value"))
        elif not LabelSelector.from_match(sel).matches(tmpl_labels):
            out.append(("FieldValueInvalid", "spec.template.metadata.labels",
                        f"Invalid value: {json.dumps(tmpl_labels)}: `selector` does not match template `labels`"))
        if old is not None and (old.get("spec") or {}).get("selector") != sel:
            out.append(("FieldValueInvalid", "spec.selector", "Invalid value: field is immutable"))
        cs = ((spec.get("template") or {}).get("spec") or {}).get("containers")
        if not cs:
            out.append(("FieldValueRequired", "spec.template.spec.containers", "Required value"))
    elif kind == ("", "events"):
        io = obj.get("involvedObject") or {}
        ns = obj["metadata"].get("namespace", "")
        if io.get("namespace") and io["namespace"] != ns:
            out.append(("FieldValueInvalid", "involvedObject.namespace",
                        f'Invalid value: "{io["namespace"]}": does not match event.namespace'))
    elif kind == ("apiextensions.k8s.io", "customresourcedefinitions"):
        out += _crd_problems(server, obj, old)
    elif kind == ("rbac.authorization.k8s.io", "rolebindings") or kind == ("rbac.authorization.k8s.io",
                                                                           "clusterrolebindings"):
        ref = obj.get("roleRef") or {}
        if not ref.get("kind") or not ref.get("name"):
            out.append(("FieldValueRequired", "roleRef", "Required value"))
        if old is not None and old.get("roleRef") != obj.get("roleRef"):
            out.append(("FieldValueInvalid", "roleRef", "Invalid value: cannot change roleRef"))
    return out


# ---------------------------------------------------------------- CRDs


def _crd_defaults(obj):
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("listKind", names["kind"] + "List")
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
    spec.setdefault("conversion", {"strategy": "None"})
    for v in spec.get("versions") or []:
        if isinstance(v, dict):
            v.setdefault("served", True)
            v.setdefault("storage", False)


def _crd_problems(server, obj, old):
    out = []
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    name = obj["metadata"].get("name", "")
    if not group or "." not in group:
        out.append(("FieldValueInvalid", "spec.group", f'Invalid value: "{group}": should be a domain with at least one dot'))
    if not plural:
        out.append(("FieldValueRequired", "spec.names.plural", "Required value"))
    if not names.get("kind"):
        out.append(("FieldValueRequired", "spec.names.kind", "Required value"))
    if name != f"{plural}.{group}":
        out.append(("FieldValueInvalid", "metadata.name",
                    f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        out.append(("FieldValueNotSupported", "spec.scope",
                    f'Unsupported value: "{spec.get("scope")}": supported values: "Cluster", "Namespaced"'))
    versions = spec.get("versions") or []
    if not versions:
        out.append(("FieldValueRequired", "spec.versions", "Required value"))
    if sum(1 for v in versions if v.get("storage")) != 1:
        out.append(("FieldValueInvalid", "spec.versions", "Invalid value: must have exactly one version marked as storage version"))
    for i, v in enumerate(versions):
        if not (v.get("schema") or {}).get("openAPIV3Schema"):
            out.append(("FieldValueRequired", f"spec.versions[{i}].schema.openAPIV3Schema",
                        "Required value: schemas are required"))
    if old is not None:
        if (old.get("spec") or {}).get("scope") != spec.get("scope"):
            out.append(("FieldValueInvalid", "spec.scope", "Invalid value: field is immutable"))
    return out


def register_crd(server, crd):
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    name = crd["metadata"]["name"]
    server.registry.remove_crd(name)
    versions = sorted([v for v in spec.get("versions") or [] if v.get("served")],
                      key=lambda v: _version_priority(v["name"]))
    storage_v = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), None)
    for i, v in enumerate(versions):
        sub = v.get("subresources") or spec.get("subresources") or {}
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        fields = [f.get("jsonPath", "").lstrip(".") for f in v.get("selectableFields") or []]
        r = Resource(spec["group"], v["name"], names["plural"], names["kind"],
                     namespaced=spec.get("scope") == "Namespaced", short=names.get("shortNames") or [],
                     singular=names.get("singular"), status="status" in sub, generation=True,
                     unconditional=False, crd=name, categories=names.get("categories") or [],
                     fields=fields, schema=schema, columns=v.get("additionalPrinterColumns") or [])
        r.storage_version = storage_v
        if v.get("deprecated"):
            r.warning = v.get("deprecationWarning") or f"{spec['group']}/{v['name']} {names['kind']} is deprecated"
        server.registry.add(r, preferred=(i == 0))
    return crd


def crd_status(crd):
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    t = now_rfc3339()
    storage_v = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), None)
    old = crd.get("status") or {}
    stored = list(old.get("storedVersions") or [])
    if storage_v and storage_v not in stored:
        stored.append(storage_v)
    return {"acceptedNames": names,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": t},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": t}],
            "storedVersions": stored}


def aggregate_cluster_roles(server):
    """The clusterrole-aggregation controller: a ClusterRole with an
    aggregationRule gets the rules of every ClusterRole its selectors match."""
    skey = ("rbac.authorization.k8s.io", "clusterroles")
    bucket = server.store.bucket(skey)
    for key, role in list(bucket.items()):
        agg = role.get("aggregationRule")
        if not agg:
            continue
        sels = [LabelSelector.from_match(x) for x in agg.get("clusterRoleSelectors") or []]
        rules = []
        for other_key, other in sorted(bucket.items()):
            if other_key == key or not any(sel.matches(other["metadata"].get("labels")) for sel in sels
                                           if not sel.empty()):
                continue
            for r in other.get("rules") or []:
                if r not in rules:
                    rules.append(r)
        if rules != (role.get("rules") or []):
            server.store.put(skey, dict(role, rules=rules), "MODIFIED")


def after_write(server, res, old, new):
    """Controllers' immediate reactions to a write (done synchronously)."""
    key = (res.group, res.plural)
    if key == ("rbac.authorization.k8s.io", "clusterroles"):
        aggregate_cluster_roles(server)
    if key == ("apiextensions.k8s.io", "customresourcedefinitions"):
        register_crd(server, new)
        if not (new.get("status") or {}).get("conditions") or old is None or \
                (old.get("spec") or {}).get("names") != (new.get("spec") or {}).get("names") or \
                (old.get("spec") or {}).get("versions") != (new.get("spec") or {}).get("versions"):
            upd = dict(new)
            upd["status"] = crd_status(new)
            server.store.put(res.storage, upd, "MODIFIED")
    elif key == ("", "namespaces") and old is None:
        ns = new["metadata"]["name"]
        sa_res = server.registry.get("", "v1", "serviceaccounts")
        cm_res = server.registry.get("", "v1", "configmaps")
        try:
            server.create(sa_res, ns, {"metadata": {"name": "default"}}, {}, None)
        except APIError:
            pass
        try:
            ca = server.ca_path.read_text() if getattr(server, "ca_path", None) else ""
            server.create(cm_res, ns, {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": ca}}, {}, None)
        except APIError:
            pass


def after_delete(server, res, gone_obj):
    if gone_obj is None:
        return
    gm = gone_obj["metadata"]
    for k in [k for k in server.applied if k[:3] == (res.storage, gm.get("namespace", ""), gm["name"])]:
        del server.applied[k]  # a new object of that name starts with no applied configuration
    if (res.group, res.plural) == ("rbac.authorization.k8s.io", "clusterroles"):
        aggregate_cluster_roles(server)
    if (res.group, res.plural) == ("apiextensions.k8s.io", "customresourcedefinitions"):
        name = gone_obj["metadata"]["name"]
        spec = gone_obj.get("spec") or {}
        skey = (spec.get("group"), (spec.get("names") or {}).get("plural"))
        for (ns, n) in list(server.store.bucket(skey).keys()):
            server.store.remove(skey, ns, n)
        server.registry.remove_crd(name)
    server.gc_wakeup.set()


# ---------------------------------------------------------------- preloaded CRDs


def _spc_schema():
    return {"type": "object", "description": "SecretProviderClass is the Schema for the secretproviderclasses API",
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                "spec": {"type": "object", "description": "SecretProviderClassSpec defines the desired state of SecretProviderClass",
                         "properties": {
                             "parameters": {"type": "object", "additionalProperties": {"type": "string"}},
                             "provider": {"type": "string"},
                             "secretObjects": {"type": "array", "items": {"type": "object", "properties": {
                                 "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                                 "data": {"type": "array", "items": {"type": "object", "properties": {
                                     "key": {"type": "string"}, "objectName": {"type": "string"}}}},
                                 "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                 "secretName": {"type": "string"}, "type": {"type": "string"}}}}}},
                "status": {"type": "object", "properties": {
                    "byPod": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "namespace": {"type": "string"}}}}}}}}


def _spcps_schema():
    return {"type": "object",
            "description": "SecretProviderClassPodStatus is the Schema for the secretproviderclassespodstatus API",
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                "status": {"type": "object", "properties": {
                    "mounted": {"type": "boolean"},
                    "objects": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "version": {"type": "string"}}}},
                    "podName": {"type": "string"}, "secretProviderClassName": {"type": "string"},
                    "targetPath": {"type": "string"}}}}}


def secrets_store_crds():
    g = "secrets-store.csi.x-k8s.io"
    spc = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"secretproviderclasses.{g}"},
           "spec": {"group": g, "scope": "Namespaced",
                    "names": {"kind": "SecretProviderClass", "listKind": "SecretProviderClassList",
                              "plural": "secretproviderclasses", "singular": "secretproviderclass"},
                    "versions": [
                        {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                         "schema": {"openAPIV3Schema": _spc_schema()}},
                        {"name": "v1alpha1", "served": True, "storage": False, "deprecated": True,
                         "subresources": {"status": {}}, "schema": {"openAPIV3Schema": _spc_schema()}}]}}
    ps = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
          "metadata": {"name": f"secretproviderclasspodstatuses.{g}"},
          "spec": {"group": g, "scope": "Namespaced",
                   "names": {"kind": "SecretProviderClassPodStatus", "listKind": "SecretProviderClassPodStatusList",
                             "plural": "secretproviderclasspodstatuses", "singular": "secretproviderclasspodstatus"},
                   "versions": [
                       {"name": "v1", "served": True, "storage": True,
                        "schema": {"openAPIV3Schema": _spcps_schema()}},
                       {"name": "v1alpha1", "served": True, "storage": False, "deprecated": True,
                        "schema": {"openAPIV3Schema": _spcps_schema()}}]}}
    return [spc, ps]


def clustercsidriver_crd():
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return [{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "metadata": {"name": "clustercsidrivers.operator.openshift.io"},
             "spec": {"group": "operator.openshift.io", "scope": "Cluster",
                      "names": {"kind": "ClusterCSIDriver", "listKind": "ClusterCSIDriverList",
                                "plural": "clustercsidrivers", "singular": "clustercsidriver"},
                      "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                        "metadata": {"type": "object"}, "spec": free, "status": free}}}}]}}]


def open_crd(group, kind, plural, scope="Namespaced", short=(), version="v1", status=True, categories=()):
    """A CRD with an open schema (any fields kept): for APIs this server only needs to store."""
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    names = {"kind": kind, "listKind": kind + "List", "plural": plural, "singular": kind.lower()}
    if short:
        names["shortNames"] = list(short)
    if categories:
        names["categories"] = list(categories)
    v = {"name": version, "served": True, "storage": True,
         "schema": {"openAPIV3Schema": {"type": "object", "properties": {
             "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
             "spec": free, "status": free}}}}
    if status:
        v["subresources"] = {"status": {}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope, "names": names, "versions": [v]}}


def olm_crds():
    g = "operators.coreos.com"
    return [open_crd(g, "ClusterServiceVersion", "clusterserviceversions", short=["csv", "csvs"],
                     version="v1alpha1", categories=["olm"]),
            open_crd(g, "Subscription", "subscriptions", short=["sub", "subs"], version="v1alpha1"),
            open_crd(g, "InstallPlan", "installplans", short=["ip"], version="v1alpha1"),
            open_crd(g, "CatalogSource", "catalogsources", short=["catsrc"], version="v1alpha1"),
            open_crd(g, "OperatorGroup", "operatorgroups", short=["og"], version="v1"),
            open_crd(g, "OperatorCondition", "operatorconditions", short=["condition"], version="v2")]


def monitoring_crds():
    g = "monitoring.coreos.com"
    return [open_crd(g, "ServiceMonitor", "servicemonitors", short=["smon"], status=False),
            open_crd(g, "PodMonitor", "podmonitors", short=["pmon"], status=False),
            open_crd(g, "PrometheusRule", "prometheusrules", short=["promrule"], status=False)]


def preload_crds(item: str):
    if item == "secrets-store":
        return secrets_store_crds()
    if item in ("clustercsidriver", "openshift"):
        return clustercsidriver_crd()
    if item == "olm":
        return olm_crds()
    if item == "monitoring":
        return monitoring_crds()
    p = Path(item)
    if p.is_dir():
        files = sorted(list(p.glob("*.yaml")) + list(p.glob("*.yml")) + list(p.glob("*.json")))
    else:
        files = [p]
    out = []
    for f in files:
        text = f.read_text()
        docs = list(yaml.safe_load_all(text)) if yaml else [json.loads(text)]
        out += [d for d in docs if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]
    return out


# ============================================================== discovery and tables


def discovery_resource(r: Resource):
    d = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
         "verbs": sorted(r.verbs)}
    if r.short:
        d["shortNames"] = r.short
    if r.categories:
        d["categories"] = r.categories
    if r.crd:
        d["storageVersionHash"] = base64.b64encode(hashlib.sha256(
            f"{r.group}/{r.storage_version}/{r.kind}".encode()).digest()[:8]).decode()
    return d


def table_for(res: Resource, objs, include_object, list_meta=None):
    cols = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    extra = []
    if res.crd:
        for c in res.columns:
            cols.append({"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                         "description": c.get("description", ""), "priority": c.get("priority", 0)})
            extra.append(("path", c.get("jsonPath", "")))
        if not res.columns:
            cols.append({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0})
            extra.append(("age", None))
    else:
        spec = TABLES.get((res.group, res.plural))
        if spec:
            for name, fn in spec:
                cols.append({"name": name, "type": "string", "format": "", "description": name, "priority": 0})
                extra.append(("fn", fn))
        else:
            cols.append({"name": "Created At", "type": "date", "format": "", "description": "", "priority": 0})
            extra.append(("created", None))
    rows = []
    for o in objs:
        cells = [o["metadata"]["name"]]
        for kind, arg in extra:
            if kind == "path":
                v = _jsonpath(o, arg)
                if arg.endswith("creationTimestamp") and isinstance(v, str):
                    v = _age(v)
                cells.append(v if v is not None else "")
            elif kind == "age":
                cells.append(_age(o["metadata"].get("creationTimestamp")))
            elif kind == "created":
                cells.append(o["metadata"].get("creationTimestamp"))
            else:
                cells.append(arg(o))
        row = {"cells": cells}
        ext = res.external(o)
        if include_object == "Object":
            row["object"] = ext
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": ext["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta or {},
            "columnDefinitions": cols, "rows": rows}


def _jsonpath(o, path):
    cur = o
    for p in path.lstrip(".").split("."):
        if not p:
            continue
        if isinstance(cur, dict):
            cur = cur.get(p)
        else:
            return None
    return cur


def _age(ts):
    if not ts:
        return "<unknown>"
    try:
        t = time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        return "<unknown>"
    s = max(0, int(time.time() - t))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _pod_ready(o):
    cs = o.get("spec", {}).get("containers") or []
    st = (o.get("status") or {}).get("containerStatuses") or []
    return f"{sum(1 for s in st if s.get('ready'))}/{len(cs)}"


TABLES = {
    ("", "pods"): [("Ready", _pod_ready), ("Status", lambda o: (o.get("status") or {}).get("phase", "")),
                   ("Restarts", lambda o: sum(s.get("restartCount", 0) for s in (o.get("status") or {}).get("containerStatuses") or [])),
                   ("Age", lambda o: _age(o["metadata"].get("creationTimestamp")))],
    ("", "secrets"): [("Type", lambda o: o.get("type", "")), ("Data", lambda o: len(o.get("data") or {})),
                      ("Age", lambda o: _age(o["metadata"].get("creationTimestamp")))],
    ("", "configmaps"): [("Data", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
                         ("Age", lambda o: _age(o["metadata"].get("creationTimestamp")))],
    ("", "namespaces"): [("Status", lambda o: (o.get("status") or {}).get("phase", "")),
                         ("Age", lambda o: _age(o["metadata"].get("creationTimestamp")))],
    ("", "serviceaccounts"): [("Secrets", lambda o: len(o.get("secrets") or [])),
                              ("Age", lambda o: _age(o["metadata"].get("creationTimestamp")))],
    ("", "events"): [("Type", lambda o: o.get("type", "")), ("Reason", lambda o: o.get("reason", "")),
                     ("Object", lambda o: f"{(o.get('involvedObject') or {}).get('kind', '').lower()}/"
                                          f"{(o.get('involvedObject') or {}).get('name', '')}"),
                     ("Message", lambda o: o.get("message", ""))],
    ("apps", "daemonsets"): [(n, (lambda f: lambda o: (o.get("status") or {}).get(f, 0))(f)) for n, f in [
        ("Desired", "desiredNumberScheduled"), ("Current", "currentNumberScheduled"), ("Ready", "numberReady"),
        ("Up-to-date", "updatedNumberScheduled"), ("Available", "numberAvailable")]] +
        [("Age", lambda o: _age(o["metadata"].get("creationTimestamp")))],
    ("apps", "deployments"): [("Ready", lambda o: f"{(o.get('status') or {}).get('readyReplicas', 0)}/{(o.get('spec') or {}).get('replicas', 0)}"),
                              ("Up-to-date", lambda o: (o.get("status") or {}).get("updatedReplicas", 0)),
                              ("Available", lambda o: (o.get("status") or {}).get("availableReplicas", 0)),
                              ("Age", lambda o: _age(o["metadata"].get("creationTimestamp")))],
    ("", "services"): [("Type", lambda o: (o.get("spec") or {}).get("type", "")),
                       ("Cluster-IP", lambda o: (o.get("spec") or {}).get("clusterIP", "")),
                       ("Age", lambda o: _age(o["metadata"].get("creationTimestamp")))],
    ("", "nodes"): [("Status", lambda o: "Ready" if any(c.get("type") == "Ready" and c.get("status") == "True"
                                                        for c in (o.get("status") or {}).get("conditions") or [])
                     else "NotReady"),
                    ("Age", lambda o: _age(o["metadata"].get("creationTimestamp")))],
    ("storage.k8s.io", "csidrivers"): [("Attachrequired", lambda o: (o.get("spec") or {}).get("attachRequired")),
                                       ("Podinfoonmount", lambda o: (o.get("spec") or {}).get("podInfoOnMount")),
                                       ("Modes", lambda o: ",".join((o.get("spec") or {}).get("volumeLifecycleModes") or [])),
                                       ("Age", lambda o: _age(o["metadata"].get("creationTimestamp")))],
}


AGGREGATED_CT = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str):
    for part in (accept or "").split(","):
        p = part.strip().replace(" ", "")
        if p.startswith("application/json") and "as=APIGroupDiscoveryList" in p and "v=v2" in p \
                and "g=apidiscovery.k8s.io" in p and "v=v2beta1" not in p:
            return True
    return False


def wants_metadata(accept: str):
    """Accept asks for PartialObjectMetadata(List) in JSON (client-go's metadata client)."""
    for part in (accept or "").split(","):
        p = part.strip().replace(" ", "")
        if p.startswith("application/json") and "as=PartialObjectMetadata" in p and "g=meta.k8s.io" in p:
            return True
    return False


def partial(res, obj):
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": res.external(obj)["metadata"]}


def wants_table(accept: str):
    for part in (accept or "").split(","):
        p = part.strip().replace(" ", "")
        if "as=Table" in p and "g=meta.k8s.io" in p and ("v=v1;" in p + ";" or "v=v1," in p):
            return True
    return False


# ============================================================== HTTP: the API


class APIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-kube-apiserver"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("api: " + (fmt % args) + "\n")

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    # ---------------------------------------------------------- plumbing

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_json(self, code, obj, headers=None):
        data = json.dumps(obj, separators=(",", ":")).encode()
        hdrs = [("Content-Type", "application/json"), ("Audit-Id", self.audit_id),
                ("Cache-Control", "no-cache, private")] + list((headers or {}).items())
        self.send_raw(code, hdrs, data)

    def send_raw(self, code, headers, data: bytes):
        headers = list(headers) + [("Warning", f'299 - "{w}"') for w in getattr(self, "warnings", [])]
        # logged before the answer leaves: a client that reads the request log right after its
        # answer must see the code (the real server's audit log has it by then too)
        self.status_code = code
        self.entry["code"] = code
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error_status(self, e: APIError):
        self.send_json(e.code, e.status(), e.headers)

    def dispatch(self):
        srv: KubeAPIServer = self.server
        self.audit_id = str(uuid.uuid4())
        self.status_code = 0
        self.entry = {"method": self.command, "path": "", "query": {}, "verb": "", "resource": "", "group": "",
                      "version": "", "subresource": "", "namespace": "", "name": "", "user": "",
                      "userAgent": self.headers.get("User-Agent", ""), "time": time.time(), "code": 0, "seq": 0,
                      "duration": None}
        srv.log_request(self.entry)  # at once: an open watch is in the log while it runs
        try:
            body = self.read_body()
            u = urlsplit(self.path)
            self.entry["path"] = u.path
            q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
            self.entry["query"] = q
            while srv.down_mode == "hang" and time.monotonic() < srv.down_until and not srv.stopping.is_set():
                time.sleep(0.05)  # a partition: connected, no answer until the server is back
            if srv.down_mode == "503" and time.monotonic() < srv.down_until:
                raise APIError(503, "ServiceUnavailable", "the server is currently unable to handle the request",
                               headers={"Retry-After": "1"})
            if srv.latency > 0:
                time.sleep(srv.latency)
            if u.path in ("/healthz", "/livez", "/readyz"):
                return self.send_raw(200, [("Content-Type", "text/plain; charset=utf-8")], b"ok")
            user = self.peer_user() or srv.auth.authenticate(self.headers.get("Authorization"))
            self.entry["user"] = user.get("user", "")
            self.route(u.path, q, body, user)
        except APIError as e:
            if not self.status_code:
                self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception as e:
            traceback.print_exc()
            if not self.status_code:
                self.send_error_status(internal(f"{type(e).__name__}: {e}"))
        finally:
            self.entry["code"] = self.status_code
            self.entry["duration"] = round(time.time() - self.entry["time"], 6)

    def peer_user(self):
        """A verified client certificate authenticates as CN, groups O (as x509 auth does)."""
        sock = getattr(self, "h2c", None).sock if getattr(self, "h2c", None) else self.connection
        try:
            cert = sock.getpeercert()
        except (AttributeError, ValueError, OSError):
            return None
        if not cert:
            return None
        cn, orgs = "", []
        for rdn in cert.get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    cn = v
                elif k == "organizationName":
                    orgs.append(v)
        if not cn:
            return None
        return {"user": cn, "groups": orgs + ["system:authenticated"], "rules": [], "rbac": True}

    # ---------------------------------------------------------- routing

    def route(self, path, q, body, user):
        srv = self.server
        parts = [unquote(p) for p in path.split("/") if p]
        if path == "/version":
            self.entry["verb"] = "discovery"
            return self.send_json(200, {"major": "1", "minor": "35", "emulationMajor": "1", "emulationMinor": "35",
                                        "minCompatibilityMajor": "1", "minCompatibilityMinor": "34",
                                        "gitVersion": "v1.35.0-test", "gitCommit": "0" * 40,
                                        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                                        "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"})
        if parts and parts[0] == "openapi":
            self.entry["verb"] = "discovery"
            if parts[:2] == ["openapi", "v3"]:
                return self.openapi_v3(parts[2:])
            raise path_not_found()
        if parts in (["api"], ["apis"]) and wants_aggregated(self.headers.get("Accept", "")):
            self.entry["verb"] = "discovery"
            return self.send_raw(200, [("Content-Type", AGGREGATED_CT)],
                                 json.dumps(self.aggregated(parts == ["api"]), separators=(",", ":")).encode())
        if parts == ["api"]:
            self.entry["verb"] = "discovery"
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{srv.port}"}]})
        if parts == ["apis"]:
            self.entry["verb"] = "discovery"
            return self.send_json(200, self.group_list())
        if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        elif len(parts) == 2 and parts[0] == "apis":
            self.entry["verb"] = "discovery"
            g = parts[1]
            if g not in srv.registry.group_versions:
                raise path_not_found()
            return self.send_json(200, self.group_entry(g) | {"kind": "APIGroup", "apiVersion": "v1"})
        else:
            raise path_not_found()
        with srv.store.lock:
            known = version in srv.registry.group_versions.get(group, [])
        if not known:
            raise path_not_found()
        if not rest:
            self.entry["verb"] = "discovery"
            with srv.store.lock:
                rl = []
                for r in srv.registry.resources_in(group, version):
                    rl.append(discovery_resource(r))
                    if r.status:
                        rl.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                                   "kind": r.kind, "verbs": ["get", "patch", "update"]})
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                        "groupVersion": f"{group}/{version}" if group else version,
                                        "resources": rl})
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3:
            raise path_not_found()
        with srv.store.lock:
            res = srv.registry.get(group, version, plural)
        if res is None or (ns and not res.namespaced):
            raise path_not_found()
        if sub and not (sub == "status" and res.status):
            raise path_not_found()
        m = self.command
        watch = q.get("watch") in ("1", "true", "True")
        if m in ("GET", "HEAD"):
            verb = "get" if name else ("watch" if watch else "list")
        elif m == "POST":
            if name:
                raise APIError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")
            verb = "create"
        elif m == "PUT":
            verb = "update"
        elif m == "PATCH":
            verb = "patch"
        elif m == "DELETE":
            verb = "delete" if name else "deletecollection"
        else:
            raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if verb not in res.verbs:
            raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if verb in ("update", "patch", "get") and not name:
            raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        self.entry.update(verb=verb, resource=plural, group=group, version=version, subresource=sub,
                          namespace=ns, name=name)
        if getattr(res, "warning", None):
            self.warnings = [res.warning]
        rname = plural + ("/" + sub if sub else "")
        if not srv.allowed(user, verb, group, rname, ns, name):
            who = user.get("user", "")
            scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
            raise forbidden(plural + ("/" + sub if sub else ""), group, name,
                            f'User "{who}" cannot {verb} resource "{rname}" in API group "{group}" {scope}')
        fault = srv.take_fault(verb, res, ns, name)
        if fault is not None and fault.delay > 0:
            self.server.stopping.wait(fault.delay)
        if fault is not None and fault.code:
            if fault.code == 409:
                raise conflict(res.plural, res.group, name or "")
            hdr = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
                      410: "Expired", 403: "Forbidden", 404: "NotFound"}.get(fault.code, "Unknown")
            raise APIError(fault.code, reason, f"injected fault ({fault.code})", headers=hdr)
        return getattr(self, "op_" + verb)(res, ns, name, sub, q, body, user)

    def openapi_v3(self, gv_parts):
        """A minimal OpenAPI v3: the index, and per group/version the PATCH
        operations with their fieldValidation parameter (what kubectl checks
        before it leaves validation to the server). No schemas: kubectl falls
        back to its compiled-in types for strategic merge patches."""
        srv = self.server
        with srv.store.lock:
            gvs = [("", "v1")] + [(g, v) for g in srv.registry.group_order if g
                                  for v in srv.registry.group_versions[g]]
            if not gv_parts:
                paths = {}
                for g, v in gvs:
                    p = f"api/{v}" if not g else f"apis/{g}/{v}"
                    h = hashlib.sha256(json.dumps(sorted(
                        (r.plural, r.kind) for r in srv.registry.resources_in(g, v))).encode()).hexdigest()[:16]
                    paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={h}"}
                return self.send_json(200, {"paths": paths})
            if gv_parts[0] == "api" and len(gv_parts) == 2:
                g, v = "", gv_parts[1]
            elif gv_parts[0] == "apis" and len(gv_parts) == 3:
                g, v = gv_parts[1], gv_parts[2]
            else:
                raise path_not_found()
            if (g, v) not in gvs:
                raise path_not_found()
            paths = {}
            for r in srv.registry.resources_in(g, v):
                base = f"/api/{v}" if not g else f"/apis/{g}/{v}"
                p = f"{base}/namespaces/{{namespace}}/{r.plural}/{{name}}" if r.namespaced else \
                    f"{base}/{r.plural}/{{name}}"
                gvk = {"group": g, "version": v, "kind": r.kind}
                params = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                          for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
                op = {"operationId": f"patch{r.kind}", "parameters": params,
                      "responses": {"200": {"description": "OK"}},
                      "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk}
                paths[p] = {"patch": op}
        return self.send_json(200, {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.35.0"},
                                    "paths": paths, "components": {"schemas": {}}})

    def aggregated(self, core: bool):
        """APIGroupDiscoveryList (apidiscovery.k8s.io/v2): every group, version
        and resource in one answer; the first version listed is the preferred one."""
        srv = self.server
        items = []
        with srv.store.lock:
            groups = [""] if core else [g for g in srv.registry.group_order if g]
            for g in groups:
                vs = sorted(srv.registry.group_versions.get(g, []), key=_version_priority)
                pref = srv.registry.preferred.get(g)
                if pref in vs:
                    vs.remove(pref)
                    vs.insert(0, pref)
                versions = []
                for v in vs:
                    rl = []
                    for r in sorted(srv.registry.resources_in(g, v), key=lambda r: r.plural):
                        kind = {"group": g, "version": v, "kind": r.kind}
                        d = {"resource": r.plural, "responseKind": kind, "scope": "Namespaced" if r.namespaced
                             else "Cluster", "singularResource": r.singular, "verbs": sorted(r.verbs)}
                        if r.short:
                            d["shortNames"] = r.short
                        if r.categories:
                            d["categories"] = r.categories
                        if r.status:
                            d["subresources"] = [{"subresource": "status", "responseKind": kind,
                                                  "verbs": ["get", "patch", "update"]}]
                        rl.append(d)
                    entry = {"version": v, "resources": rl, "freshness": "Current"}
                    versions.append(entry)
                items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": versions})
        return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                "items": items}

    def group_entry(self, g):
        srv = self.server
        vs = sorted(srv.registry.group_versions[g], key=_version_priority)
        pref = srv.registry.preferred.get(g, vs[0])
        return {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{g}/{pref}", "version": pref}}

    def group_list(self):
        srv = self.server
        with srv.store.lock:
            groups = [self.group_entry(g) for g in srv.registry.group_order if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def parse_body(self, body):
        if not body:
            raise bad_request("the body of the request was in an unknown format")
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            try:
                return pb_decode_object(body)
            except (KeyError, ValueError, IndexError, UnicodeDecodeError):
                raise APIError(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted media types include: "
                               "application/json, application/yaml (this test server decodes protobuf only for "
                               "Secret, ConfigMap, Namespace, ServiceAccount and DeleteOptions)")
        try:
            if ctype in ("application/yaml", "application/apply-patch+yaml"):
                return yaml.safe_load(body.decode())
            if ctype not in ("application/json", "*/*", ""):
                raise APIError(415, "UnsupportedMediaType",
                               f'the body of the request was in an unknown format - accepted media types include: '
                               f'application/json, application/yaml, application/vnd.kubernetes.protobuf')
            return json.loads(body.decode())
        except APIError:
            raise
        except Exception as e:  # json/yaml decoding errors
            raise bad_request(f"the body of the request was in an unknown format: {e}")

    # ---------------------------------------------------------- verbs

    def op_get(self, res, ns, name, sub, q, body, user):
        with self.server.store.lock:
            obj = self.server.store.get(res.storage, ns, name)
        if obj is None:
            raise not_found(res.plural, res.group, name)
        if wants_table(self.headers.get("Accept", "")):
            return self.send_json(200, table_for(res, [obj], q.get("includeObject", "Metadata"),
                                                 {"resourceVersion": obj["metadata"]["resourceVersion"]}))
        if wants_metadata(self.headers.get("Accept", "")):
            return self.send_json(200, partial(res, obj))
        self.send_json(200, res.external(obj))

    def _selectors(self, res, q):
        lsel = LabelSelector.parse(q.get("labelSelector"))
        allowed = set(res.fields)
        if res.group == "events.k8s.io":
            allowed |= {f.replace("involvedObject", "regarding") for f in res.fields}
            fs = (q.get("fieldSelector") or "").replace("regarding.", "involvedObject.")
        else:
            fs = q.get("fieldSelector")
        fsel = FieldSelector.parse(fs, None if self.server.lenient_fields else allowed)
        return lsel, fsel

    def op_list(self, res, ns, name, sub, q, body, user):
        srv = self.server
        lsel, fsel = self._selectors(res, q)
        rv = q.get("resourceVersion", "")
        match = q.get("resourceVersionMatch", "")
        limit = int(q.get("limit") or 0)
        cont = q.get("continue", "")
        at_rv = None
        start_after = None
        with srv.store.lock:
            current = srv.store.rv
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont.encode() + b"==").decode())
                    at_rv, start_after = int(tok["rv"]), tuple(tok["start"])
                except Exception:
                    raise bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
                if at_rv < srv.store.compacted:
                    raise gone("The provided continue parameter is too old to display a consistent list result. "
                               "You can start a new list without the continue parameter, or use the continue token "
                               "in this response to retrieve the remainder of the results. Continuing with the "
                               "provided token results in an inconsistent list - objects that were created, modified, "
                               "or deleted between the time the first chunk was returned and now may show up in the list.")
            elif rv and rv != "0":
                try:
                    want = int(rv)
                except ValueError:
                    raise bad_request(f"invalid resource version: {rv}")
                if want > current:
                    deadline = time.monotonic() + 3
                    while srv.store.rv < want and time.monotonic() < deadline:
                        srv.store.cond.wait(0.1)
                    if srv.store.rv < want:
                        raise APIError(504, "Timeout", f"Too large resource version: {want}, current: {srv.store.rv}",
                                       {"causes": [{"reason": "ResourceVersionTooLarge",
                                                    "message": "Too large resource version"}],
                                        "retryAfterSeconds": 1}, headers={"Retry-After": "1"})
                if match == "Exact":
                    at_rv = want
            items = srv.list_objects(res, ns, lsel, fsel, at_rv)
            list_rv = at_rv if at_rv is not None else srv.store.rv
        if start_after is not None:
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start_after]
        lm = {"resourceVersion": str(list_rv)}
        if rv == "0" and not cont:
            limit = 0  # served from the watch cache: a real server ignores limit there
        if limit and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            last = items[-1]["metadata"]
            lm["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"rv": list_rv, "start": [last.get("namespace", ""), last["name"]]}).encode()).decode().rstrip("=")
            lm["remainingItemCount"] = remaining
        if wants_table(self.headers.get("Accept", "")):
            return self.send_json(200, table_for(res, items, q.get("includeObject", "Metadata"), lm))
        if wants_metadata(self.headers.get("Accept", "")):
            return self.send_json(200, {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                        "metadata": lm, "items": [partial(res, o) for o in items]})
        if res.crd:
            out_items = [res.external(o) for o in items]
        else:
            out_items = []
            for o in items:
                e = res.external(o)
                e.pop("apiVersion", None)
                e.pop("kind", None)
                out_items.append(e)
        self.send_json(200, {"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": lm,
                             "items": out_items})

    def _manager(self, q, operation="Update"):
        ua = self.headers.get("User-Agent", "") or "unknown"
        q["_manager"] = q.get("fieldManager") or ua.split("/")[0][:128]
        q["_operation"] = operation

    def op_create(self, res, ns, name, sub, q, body, user):
        self._manager(q)
        srv = self.server
        obj = self.parse_body(body)
        if (res.group, res.plural) == ("authorization.k8s.io", "selfsubjectaccessreviews"):
            ra = ((obj or {}).get("spec") or {}).get("resourceAttributes") or {}
            rname = ra.get("resource", "") + ("/" + ra["subresource"] if ra.get("subresource") else "")
            ok = srv.allowed(user, ra.get("verb", ""), ra.get("group", ""), rname, ra.get("namespace", ""),
                             ra.get("name", ""))
            out = dict(obj)
            out["status"] = {"allowed": bool(ok)}
            out.setdefault("metadata", {})["creationTimestamp"] = None
            return self.send_json(201, res.external(out))
        created = srv.create(res, ns, obj, q, user, dry_run=q.get("dryRun") == "All")
        self.send_json(201, res.external(created))

    def op_update(self, res, ns, name, sub, q, body, user):
        self._manager(q)
        obj = self.parse_body(body)
        out = self.server.update(res, ns, name, obj, q, user, subresource=sub, dry_run=q.get("dryRun") == "All")
        self.send_json(200, res.external(out))

    def op_patch(self, res, ns, name, sub, q, body, user):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        self._manager(q, "Apply" if ctype == "application/apply-patch+yaml" else "Update")
        out, code = self.server.patch(res, ns, name, self.headers.get("Content-Type"), body, q, user, subresource=sub)
        self.send_json(code, res.external(out))

    def op_delete(self, res, ns, name, sub, q, body, user):
        opts = {}
        if body:
            try:
                if body.startswith(b"k8s\x00"):
                    opts = pb_decode_object(body)
                else:
                    opts = json.loads(body.decode()) or {}
            except (ValueError, KeyError, IndexError):
                raise bad_request("invalid DeleteOptions")
        if q.get("propagationPolicy"):
            opts["propagationPolicy"] = q["propagationPolicy"]
        if q.get("gracePeriodSeconds"):
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        out, code = self.server.delete(res, ns, name, opts, user, dry_run=q.get("dryRun") == "All")
        self.send_json(code, out if out.get("kind") == "Status" else res.external(out))

    def op_deletecollection(self, res, ns, name, sub, q, body, user):
        srv = self.server
        lsel, fsel = self._selectors(res, q)
        opts = {}
        if body:
            try:
                opts = json.loads(body.decode()) or {}
            except ValueError:
                pass
        items = srv.list_objects(res, ns, lsel, fsel)
        deleted = []
        for o in items:
            try:
                out, _ = srv.delete(res, o["metadata"].get("namespace", ""), o["metadata"]["name"], opts, user)
                deleted.append(o)
            except APIError:
                pass
        e = [res.external(o) for o in deleted]
        self.send_json(200, {"kind": res.kind + "List", "apiVersion": res.api_version,
                             "metadata": {"resourceVersion": str(srv.store.rv)}, "items": e})

    # ---------------------------------------------------------- watch

    def op_watch(self, res, ns, name, sub, q, body, user):
        srv = self.server
        store = srv.store
        lsel, fsel = self._selectors(res, q)
        rv = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true", "True")
        send_initial = q.get("sendInitialEvents") in ("true", "1")
        timeout = float(q.get("timeoutSeconds") or 0)
        table = wants_table(self.headers.get("Accept", ""))
        self.metadata_only = wants_metadata(self.headers.get("Accept", ""))
        deadline = time.monotonic() + timeout if timeout > 0 else None
        initial = []
        with store.lock:
            epoch = srv.watch_epoch
            if rv in ("", "0") or send_initial:
                if send_initial and rv not in ("", "0"):
                    start_rv = int(rv)
                    if start_rv < store.compacted:
                        self._start_stream()
                        self._send_gone(start_rv)
                        return self._end_stream()
                initial = srv.list_objects(res, ns, lsel, fsel)
                start_rv = store.rv
            else:
                try:
                    start_rv = int(rv)
                except ValueError:
                    raise bad_request(f"invalid resource version: {rv}")
            pos = store.hbase + len(store.history)
            # first event newer than start_rv
            lo = 0
            hist = store.history
            hi = len(hist)
            while lo < hi:
                mid = (lo + hi) // 2
                if hist[mid].rv <= start_rv:
                    lo = mid + 1
                else:
                    hi = mid
            pos = store.hbase + lo
            too_old = start_rv < store.compacted
        self._start_stream()
        if too_old:
            self._send_gone(start_rv)
            return self._end_stream()
        for o in initial:
            if not self._send_event("ADDED", o, res, table):
                return
        if send_initial and bookmarks:
            bm = {"kind": res.kind, "apiVersion": res.api_version,
                  "metadata": {"resourceVersion": str(start_rv), "creationTimestamp": None,
                               "annotations": {"k8s.io/initial-events-end": "true"}}}
            if not self._write_chunk({"type": "BOOKMARK", "object": bm}):
                return
        last_rv = start_rv
        last_bookmark = time.monotonic()
        while True:
            batch = []
            with store.cond:
                while True:
                    if srv.stopping.is_set() or srv.watch_epoch != epoch:
                        break
                    if pos < store.hbase:
                        break
                    if pos - store.hbase < len(store.history):
                        batch = store.history[pos - store.hbase:]
                        pos = store.hbase + len(store.history)
                        break
                    now = time.monotonic()
                    wait = 0.25
                    if deadline is not None:
                        wait = min(wait, deadline - now)
                    if bookmarks:
                        wait = min(wait, max(0.0, last_bookmark + srv.bookmark_interval - now))
                    if wait <= 0:
                        break
                    store.cond.wait(wait)
                    if self._client_gone():
                        return self._abort()
                current_rv = store.rv
                ended = srv.stopping.is_set() or srv.watch_epoch != epoch
                fell_behind = pos < store.hbase
            if ended:
                return self._end_stream()
            if fell_behind:
                self._send_gone(last_rv)
                return self._end_stream()
            while srv.down_mode == "hang" and time.monotonic() < srv.down_until and not srv.stopping.is_set():
                time.sleep(0.05)
                if self._client_gone():
                    return self._abort()
            for ev in batch:
                if ev.skey != res.storage:
                    last_rv = ev.rv
                    continue
                typ = self._classify(ev, res, ns, lsel, fsel)
                last_rv = ev.rv
                if typ is None:
                    continue
                obj = ev.obj if typ != "DELETED" or ev.type == "DELETED" else \
                    dict(ev.prev, metadata=dict(ev.prev["metadata"], resourceVersion=str(ev.rv)))
                if not self._send_event(typ, obj, res, table):
                    return
            now = time.monotonic()
            if bookmarks and now - last_bookmark >= srv.bookmark_interval:
                if not batch:
                    last_rv = max(last_rv, current_rv)
                bm = {"kind": res.kind, "apiVersion": res.api_version,
                      "metadata": {"resourceVersion": str(last_rv), "creationTimestamp": None}}
                if not self._write_chunk({"type": "BOOKMARK", "object": bm}):
                    return
                last_bookmark = now
            if deadline is not None and now >= deadline:
                return self._end_stream()

    def _classify(self, ev, res, ns, lsel, fsel):
        def ok(o):
            if o is None:
                return False
            m = o["metadata"]
            if res.namespaced and ns and m.get("namespace", "") != ns:
                return False
            return lsel.matches(m.get("labels")) and fsel.matches(o)
        if ev.type == "ADDED":
            return "ADDED" if ok(ev.obj) else None
        if ev.type == "DELETED":
            return "DELETED" if ok(ev.prev) else None
        new_ok, old_ok = ok(ev.obj), ok(ev.prev)
        if new_ok and old_ok:
            return "MODIFIED"
        if new_ok:
            return "ADDED"
        if old_ok:
            return "DELETED"
        return None

    def _client_gone(self):
        try:
            sock = self.connection
            if hasattr(sock, "pending") and sock.pending():
                return True
            r, _, _ = select.select([sock], [], [], 0)
            return bool(r)
        except (OSError, ValueError):
            return True

    def _start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Audit-Id", self.audit_id)
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        self.status_code = 200
        self.entry["code"] = 200

    def _write_chunk(self, ev) -> bool:
        data = (json.dumps(ev, separators=(",", ":")) + "\n").encode()
        return self._stream_write(data)

    def _stream_write(self, data: bytes) -> bool:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            return True
        except (OSError, ValueError, ssl.SSLError):
            self.close_connection = True
            return False

    def _send_event(self, typ, obj, res, table):
        o = partial(res, obj) if getattr(self, "metadata_only", False) else res.external(obj)
        if table:
            o = table_for(res, [obj], "Metadata", {"resourceVersion": obj["metadata"]["resourceVersion"]})
        return self._write_chunk({"type": typ, "object": o})

    def _send_gone(self, rv):
        st = gone(f"too old resource version: {rv} ({self.server.store.compacted})").status()
        self._write_chunk({"type": "ERROR", "object": st})

    def _end_stream(self):
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, ValueError, ssl.SSLError):
            self.close_connection = True

    def _abort(self):
        self.close_connection = True


# ============================================================== HTTP/2 (--http2)


class H2Conn:
    """One HTTP/2 connection (h2 library): a single thread does all socket I/O;
    each request runs in a thread of its own, so watches and other requests
    share the connection as with a real server."""

    def __init__(self, server, sock, addr):
        import h2.config
        import h2.connection
        self.server, self.sock, self.addr = server, sock, addr
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        self.cond = threading.Condition()
        self.streams: dict[int, dict] = {}
        self.closed = False
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)

    def wake(self):
        try:
            self.wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass

    def run(self):
        import h2.events as ev
        with self.cond:
            self.conn.initiate_connection()
        self.sock.settimeout(None)
        try:
            while not self.closed and not self.server.stopping.is_set():
                with self.cond:
                    out = self.conn.data_to_send()
                if out:
                    self.sock.sendall(out)
                if self.sock.pending() == 0:
                    r, _, _ = select.select([self.sock, self.wake_r], [], [], 1.0)
                    if self.wake_r in r:
                        try:
                            while self.wake_r.recv(4096):
                                pass
                        except (BlockingIOError, OSError):
                            pass
                    if self.sock not in r:
                        continue
                data = self.sock.recv(65536)
                if not data:
                    break
                with self.cond:
                    events = self.conn.receive_data(data)
                    for e in events:
                        if isinstance(e, ev.RequestReceived):
                            self.streams[e.stream_id] = {"headers": e.headers, "body": bytearray(), "reset": False}
                            if e.stream_ended:
                                self._start(e.stream_id)
                        elif isinstance(e, ev.DataReceived):
                            st = self.streams.get(e.stream_id)
                            if st is not None:
                                st["body"] += e.data
                            self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                        elif isinstance(e, ev.StreamEnded):
                            if e.stream_id in self.streams and "thread" not in self.streams[e.stream_id]:
                                self._start(e.stream_id)
                        elif isinstance(e, ev.StreamReset):
                            st = self.streams.get(e.stream_id)
                            if st is not None:
                                st["reset"] = True
                        elif isinstance(e, ev.ConnectionTerminated):
                            self.closed = True
                    self.cond.notify_all()
        except (OSError, ssl.SSLError, ValueError):
            pass
        except Exception:
            if self.server.verbose:
                traceback.print_exc()
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()
            for st in list(self.streams.values()):
                t = st.get("thread")
                if t is not None:
                    t.join(5)
            self.wake_r.close()
            self.wake_w.close()

    def _start(self, sid):
        st = self.streams[sid]
        t = threading.Thread(target=self._serve_stream, args=(sid, st), daemon=True)
        st["thread"] = t
        t.start()

    def _serve_stream(self, sid, st):
        try:
            H2Handler(self, sid, st).dispatch()
        except Exception:
            if self.server.verbose:
                traceback.print_exc()
        finally:
            with self.cond:
                self.streams.pop(sid, None)

    def stream_gone(self, sid):
        with self.cond:
            st = self.streams.get(sid)
            return self.closed or st is None or st["reset"]

    def send_headers(self, sid, headers, end=False):
        import h2.exceptions
        with self.cond:
            if self.closed:
                return False
            try:
                self.conn.send_headers(sid, headers, end_stream=end)
            except h2.exceptions.H2Error:
                return False
        self.wake()
        return True

    def send_data(self, sid, data: bytes, end=False) -> bool:
        import h2.exceptions
        view = memoryview(data)
        while True:
            with self.cond:
                while True:
                    if self.closed or self.streams.get(sid, {}).get("reset"):
                        return False
                    try:
                        window = self.conn.local_flow_control_window(sid)
                    except h2.exceptions.H2Error:
                        return False
                    if window > 0 or len(view) == 0:
                        break
                    self.cond.wait(1.0)
                n = min(len(view), window, self.conn.max_outbound_frame_size)
                try:
                    self.conn.send_data(sid, view[:n].tobytes(), end_stream=end and n == len(view))
                except h2.exceptions.H2Error:
                    return False
                view = view[n:]
            self.wake()
            if len(view) == 0:
                return True


class H2Handler(APIHandler):
    """APIHandler over one HTTP/2 stream."""

    _SKIP = {"connection", "transfer-encoding", "keep-alive", "content-length"}

    def __init__(self, h2c: H2Conn, sid, st):
        import email.message
        self.h2c, self.sid = h2c, sid
        self.server = h2c.server
        hdrs = dict(st["headers"])
        self.command = hdrs.get(":method", "GET")
        self.path = hdrs.get(":path", "/")
        msg = email.message.Message()
        for k, v in st["headers"]:
            if not k.startswith(":"):
                msg[k] = v
        self.headers = msg
        self.body = bytes(st["body"])
        self.close_connection = False
        self._pending = []

    def read_body(self):
        return self.body

    def send_raw(self, code, headers, data):
        headers = list(headers) + [("Warning", f'299 - "{w}"') for w in getattr(self, "warnings", [])]
        hdrs = [(":status", str(code))] + [(k.lower(), str(v)) for k, v in headers
                                           if k.lower() not in self._SKIP]
        hdrs.append(("content-length", str(len(data))))
        self.status_code = code  # logged before the answer leaves (as above)
        self.entry["code"] = code
        if self.command == "HEAD" or not data:
            self.h2c.send_headers(self.sid, hdrs, end=True)
        else:
            self.h2c.send_headers(self.sid, hdrs)
            self.h2c.send_data(self.sid, data, end=True)

    def _start_stream(self):
        self.h2c.send_headers(self.sid, [(":status", "200"), ("content-type", "application/json"),
                                         ("audit-id", self.audit_id), ("cache-control", "no-cache, private")])
        self.status_code = 200
        self.entry["code"] = 200

    def _stream_write(self, data):
        return self.h2c.send_data(self.sid, data)

    def _end_stream(self):
        self.h2c.send_data(self.sid, b"", end=True)

    def _client_gone(self):
        return self.h2c.stream_gone(self.sid)

    def _abort(self):
        import h2.errors
        with self.h2c.cond:
            try:
                self.h2c.conn.reset_stream(self.sid, h2.errors.ErrorCodes.CANCEL)
            except Exception:
                pass
        self.h2c.wake()


# ============================================================== HTTP: the control API


class ControlHandler(BaseHTTPRequestHandler):
    """Plain HTTP on 127.0.0.1 only: fault injection and inspection."""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("control: " + (fmt % args) + "\n")

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_GET

    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def dispatch(self):
        srv: KubeAPIServer = self.server
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw.decode()) if raw else {}
        except ValueError:
            return self.reply(400, {"error": "body must be JSON"})
        u = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        args = {**q, **(body if isinstance(body, dict) else {})}
        path = u.path.rstrip("/")
        m = self.command
        try:
            if path == "/healthz":
                return self.reply(200, {"ok": True})
            if path == "/compact" and m == "POST":
                upto = int(args["resourceVersion"]) if args.get("resourceVersion") else None
                return self.reply(200, {"compacted": srv.store.compact(upto), "resourceVersion": srv.store.rv})
            if path == "/drop-watches" and m == "POST":
                with srv.store.cond:
                    srv.watch_epoch += 1
                    srv.store.cond.notify_all()
                if args.get("abrupt"):
                    srv._reset_connections()
                return self.reply(200, {"ok": True})
            if path == "/down" and m == "POST":
                mode = args.get("mode", "refuse")
                if mode not in ("refuse", "503", "hang"):
                    return self.reply(400, {"error": "mode is refuse, 503 or hang"})
                srv.go_down(float(args.get("seconds", 3600)), mode)
                return self.reply(200, {"ok": True})
            if path == "/up" and m == "POST":
                srv.come_up()
                return self.reply(200, {"ok": True})
            if path == "/latency" and m == "POST":
                srv.latency = float(args.get("seconds", 0))
                return self.reply(200, {"latency": srv.latency})
            if path == "/bookmark-interval" and m == "POST":
                srv.bookmark_interval = float(args.get("seconds", 1))
                return self.reply(200, {"bookmarkInterval": srv.bookmark_interval})
            if path in ("/conflicts", "/faults") and m == "POST":
                spec = dict(args)
                if path == "/conflicts":
                    spec["code"] = 409
                f = Fault(spec)
                with srv.faults_lock:
                    srv.faults.append(f)
                return self.reply(200, f.describe())
            if path == "/faults" and m == "GET":
                with srv.faults_lock:
                    return self.reply(200, {"faults": [f.describe() for f in srv.faults]})
            if path == "/faults" and m == "DELETE":
                with srv.faults_lock:
                    srv.faults.clear()
                return self.reply(200, {"ok": True})
            if path == "/requests" and m == "GET":
                since = int(args.get("since", 0))
                with srv.requests_lock:
                    reqs = srv.requests[since:]
                    nxt = len(srv.requests)
                counts = Counter()
                for r in reqs:
                    if r.get("verb") and r["verb"] != "discovery":
                        counts[f"{r['verb']} {r['resource']}{'/' + r['subresource'] if r['subresource'] else ''}"] += 1
                return self.reply(200, {"requests": reqs, "counts": dict(counts), "next": nxt})
            if path == "/requests" and m == "DELETE":
                with srv.requests_lock:
                    srv.requests.clear()
                return self.reply(200, {"ok": True})
            if path == "/tokens" and m == "POST":
                tok = args.get("token") or pysecrets.token_hex(16)
                entry = {"token": tok, "user": args.get("user", "test-user"),
                         "groups": args.get("groups") or ["system:authenticated"],
                         "rules": args.get("rules") or [], "rbac": bool(args.get("rbac", False))}

                def add(entries):
                    entries[:] = [e for e in entries if e.get("token") != tok] + [entry]
                srv.auth.modify(add)
                return self.reply(200, entry)
            if path == "/tokens/expire" and m == "POST":
                tok = args.get("token")
                user = args.get("user")

                def expire(entries):
                    n = 0
                    for e in entries:
                        if (tok and e.get("token") == tok) or (user and e.get("user") == user):
                            e["expired"] = True
                            n += 1
                    return n
                return self.reply(200, {"expired": srv.auth.modify(expire)})
            if path == "/tokens" and m == "GET":
                with srv.auth.lock:
                    srv.auth.load()
                    return self.reply(200, {"tokens": list(srv.auth.tokens.values())})
            if path == "/client-certs" and m == "POST":
                return self.reply(200, srv.client_cert(args.get("user", "test-user"), args.get("groups") or []))
            if path == "/gc" and m == "POST":
                if "paused" in args:
                    srv.gc_paused = args["paused"] in (True, "1", "true")
                if not srv.gc_paused:
                    while srv.gc_pass():
                        pass
                return self.reply(200, {"paused": srv.gc_paused})
            if path == "/state" and m == "GET":
                with srv.store.lock:
                    return self.reply(200, {"resourceVersion": srv.store.rv, "compacted": srv.store.compacted,
                                            "history": len(srv.store.history),
                                            "openConnections": sum(1 for c in list(srv.conns.values()) if not c), "threads": len(srv.threads),
                                            "down": srv.down_mode, "watchEpoch": srv.watch_epoch})
            return self.reply(404, {"error": f"no such control endpoint: {m} {path}"})
        except (KeyError, ValueError, TypeError) as e:
            return self.reply(400, {"error": str(e)})


# ============================================================== main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="HTTPS port (0: any free port)")
    ap.add_argument("--control-port", type=int, default=0, help="plain-HTTP control port on 127.0.0.1 (0: any)")
    ap.add_argument("--state-dir", required=True, help="where ca.crt, admin-token, kubeconfig, tokens.json and "
                                                       "server.json are written")
    ap.add_argument("--tls-dir", help="reuse (or create) the CA and serving certificate here (default: state dir)")
    ap.add_argument("--preload-crds", action="append", default=[],
                    help="secrets-store | clustercsidriver | olm | monitoring | a CRD YAML file or directory "
                         "(repeatable, or comma-separated)")
    ap.add_argument("--bookmark-interval", type=float, default=1.0, help="seconds between watch bookmarks")
    ap.add_argument("--gc-interval", type=float, default=1.0, help="seconds between garbage-collector sweeps")
    ap.add_argument("--auto-create-namespaces", action="store_true",
                    help="create a missing namespace instead of answering 404 (a real server does not)")
    ap.add_argument("--pod-grace", action="store_true",
                    help="deleting a pod bound to a node marks it (deletionTimestamp) and removes it after its "
                         "grace period or on a delete with gracePeriodSeconds=0, as a kubelet would; without it "
                         "pods go at once")
    ap.add_argument("--any-field-selector", action="store_true",
                    help="accept a field selector on any dotted path (a real server answers 400 for fields "
                         "it does not index)")
    ap.add_argument("--http2", action="store_true",
                    help="offer HTTP/2 (ALPN h2) as well as HTTP/1.1, as a real server does (needs the h2 package)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    preload = []
    for p in a.preload_crds:
        preload += [x for x in p.split(",") if x]
    srv = KubeAPIServer(Path(a.state_dir), port=a.port, control_port=a.control_port,
                        tls_dir=Path(a.tls_dir) if a.tls_dir else None, bookmark_interval=a.bookmark_interval,
                        gc_interval=a.gc_interval, preload=preload, verbose=a.verbose,
                        auto_namespaces=a.auto_create_namespaces, http2=a.http2, pod_grace=a.pod_grace,
                        lenient_fields=a.any_field_selector)
    info = srv.start()
    print(json.dumps(info), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(1):
        pass
    srv.stop()


if __name__ == "__main__":
    main()
