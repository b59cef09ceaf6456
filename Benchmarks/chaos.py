#!/usr/bin/env python3
"""Chaos run: thousands of publishes and unpublishes through the real driver while
everything around it misbehaves, and a count of what a pod or the node would have
seen go wrong.

grpcio plays kubelet (a new connection per call, as kubelet dials per operation,
with a grpc-timeout on every call); csi-reference-provider is the provider. Meanwhile:

- the provider is SIGKILLed and restarted;
- the driver is SIGKILLed and restarted with the same flags and socket (kubelet
  keeps calling; calls that fail while it is down are counted as injected);
- classes answer near and past kubelet's deadline, throttle (error code Throttled,
  gRPC RESOURCE_EXHAUSTED), fail at random, and send hostile responses: `../escape`,
  `/etc/evil`, a NUL byte in a name, 100 000 files, a file larger than the tmpfs, a
  mode asking for a symlink, a path through another file's link, duplicate names,
  huge and file-type modes, `..data`, no versions; some always, some on a fraction
  of calls (so refreshes of mounted volumes meet them too, with rotation on);
- a rotator rewrites the data files of one class, so refreshes really write.

The driver sizes each tmpfs at twice its message limit (--max-call-recv-msg-size), so a
file larger than the tmpfs cannot arrive in one answer: the 32 MiB file meets the message
limit, and the 100 000 one-byte files (a page each) are what fill a tmpfs (ENOSPC).

A reader polls every published target as a pod would (resolve `..data`, list the
names, read each file through the timestamp directory and through its link) and
checks the content is exactly one complete expected set. Afterwards it counts:

  wrong_volumes          volumes a poll saw empty, partial or with unexpected content
  files_outside_targets  anything under the kubelet root or the sentinel trees
                         that is not kubelet's own directories, and sentinel
                         files changed
  targets_left           targets still there after an unpublish answered OK
  mounts_left            mounts under the run's directory after the run
  unexplained_failures   failed calls no injected fault explains (each failure is
                         classified by its gRPC code and the faults active then)
  failed_publish_mounts  publishes that failed with a final code yet left a mount
  hostile_accepted       publishes of an always-hostile class that answered OK

and exits 1 when any of them is above 0 (2 when the run could not reach its
number of calls within its time bound).

Usage (root):
    swift build -c release
    python3 Benchmarks/chaos.py                 # full: >= 10 000 publishes and unpublishes
    python3 Benchmarks/chaos.py --quick         # the integration test's short run (debug build)
    python3 Benchmarks/chaos.py --out chaos.json
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "integration"))

import grpc  # noqa: E402

from support import compile_proto  # noqa: E402

PROVIDER = "reference"
ALWAYS_HOSTILE = ["dotdot", "absolute", "nul", "many", "tmpfs-full", "symlink", "through-link", "duplicate",
                  "huge-mode", "bad-mode", "reserved", "empty-versions"]
SOMETIMES_HOSTILE = ["dotdot", "absolute", "nul", "tmpfs-full", "symlink", "through-link", "huge-mode"]
CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    # Each channel its own connection: a call never waits out a backoff left by a dead driver.
    ("grpc.use_local_subchannel_pool", 1),
]
# Codes kubelet treats as "the operation may still be in progress" (it unpublishes later).
# Answers so big that building, sending and checking them keeps the provider and the
# driver busy for a while (a debug build most).
HEAVY = {"hostile:many", "hostile:tmpfs-full"}
NON_FINAL = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "RESOURCE_EXHAUSTED", "ABORTED"}


def now() -> float:
    return time.monotonic()


# ---------------------------------------------------------------------------
# Configuration


@dataclass
class Config:
    quick: bool
    driver_bin: Path
    provider_bin: Path
    calls: int  # publishes and unpublishes each at least this many
    bound_s: float  # the run stops here even if short of `calls`
    workers: int
    deadline_s: float  # kubelet's grpc-timeout
    hold_s: tuple[float, float]
    driver_kills: int
    provider_kills: int
    out: Optional[Path]
    keep: bool
    seed: int
    only: Optional[list] = None
    skip: Optional[list] = None


# ---------------------------------------------------------------------------
# Classes: what each SecretProviderClass injects and what its volume must hold


@dataclass
class ChaosClass:
    name: str
    params: dict
    faults: set  # labels of the injected faults, used to explain failures
    weight: float
    always_fails: bool = False
    files: dict = field(default_factory=dict)  # path -> set of acceptable contents (bytes)
    modes: dict = field(default_factory=dict)


def objects_param(objs: list[dict]) -> str:
    return json.dumps(objs)


def build_classes(cfg: Config, data_dir: Path) -> list[ChaosClass]:
    good = [
        {"objectName": "username", "value": "chaos-user"},
        {"objectName": "password", "path": "db/password", "value": "s3cr3t-chaos", "mode": "0440"},
        {"objectName": "cert", "path": "tls/nested/cert.pem", "value": "-----CERT-----\n" * 4},
    ]

    def good_files() -> dict:
        return {o.get("path", o["objectName"]): {o["value"].encode()} for o in good}

    classes: list[ChaosClass] = []

    def add(name, params, faults, weight, always_fails=False, files=None):
        p = {"objects": objects_param(good)}
        p.update(params)
        classes.append(ChaosClass(name, p, set(faults), weight, always_fails, files if files is not None else good_files()))

    add("healthy", {}, [], 6)
    # Rotation: objects read from files the rotator rewrites.
    rot = [{"objectName": "rot-a"}, {"objectName": "rot-b", "path": "nested/rot-b"}]
    classes.append(ChaosClass("rotating", {"objects": objects_param(rot)}, set(), 3, False,
                              {"rot-a": set(), "nested/rot-b": set()}))
    d = cfg.deadline_s * 1000
    add("near-deadline", {"fault.latency": f"normal:{d * 0.85:.0f}ms,{d * 0.12:.0f}ms"}, ["latency"], 2)
    add("past-deadline", {"fault.latency": f"{d * 1.3:.0f}ms"}, ["latency"], 0.5)
    add("long-tail", {"fault.latency": f"longtail:20ms,{d:.0f}ms"}, ["latency"], 1)
    add("throttled", {"fault.throttleEvery": "3s", "fault.throttleFor": "1500ms"}, ["throttled"], 1.5)
    add("rate-limited", {"fault.errorRate": "0.5", "fault.errorKind": "resource-exhausted"}, ["rate-limited"], 1.5)
    add("flaky", {"fault.errorRate": "0.3", "fault.errorKind": "unavailable"}, ["injected-unavailable"], 1)
    add("erroring", {"fault.errorRate": "0.3", "fault.errorKind": "internal"}, ["injected-internal"], 1)
    add("erroring-response", {"fault.errorRate": "0.3"}, ["injected-response"], 1)
    for mode in ALWAYS_HOSTILE:
        w = 0.05 if mode in ("many", "tmpfs-full") else 0.25
        add(f"hostile-{mode}", {"fault.hostile": mode}, [f"hostile:{mode}"], w, always_fails=True)
    for mode in SOMETIMES_HOSTILE:
        w = 0.1 if mode == "tmpfs-full" else 0.4
        add(f"sometimes-{mode}", {"fault.hostile": mode, "fault.hostileRate": "0.5"}, [f"hostile:{mode}"], w)
    return classes


def write_spc(spc_dir: Path, c: ChaosClass) -> None:
    lines = ["apiVersion: secrets-store.csi.x-k8s.io/v1", "kind: SecretProviderClass", "metadata:",
             f"  name: {c.name}", "  namespace: chaos", "spec:", f"  provider: {PROVIDER}", "  parameters:"]
    for k, v in c.params.items():
        lines.append(f"    {json.dumps(k)}: {json.dumps(v)}")
    (spc_dir / f"{c.name}.yaml").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# Processes


class Proc:
    """A driver or provider process that can be killed and restarted with the same arguments."""

    def __init__(self, name: str, args: list[str], socket_path: Path, log: Path, ready):
        self.name, self.args, self.socket_path, self.log_path, self.ready = name, args, socket_path, log, ready
        self.proc: Optional[subprocess.Popen] = None
        self.lock = threading.Lock()
        self.down: list[list[float]] = []  # [killed at, serving again at] (inf while down)
        self.starts = 0
        self.log_f = open(log, "ab")

    def start(self, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self.log_f, stderr=self.log_f)
        self.starts += 1
        deadline = now() + timeout
        while now() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if self.ready():
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def kill_and_restart(self, pause: float) -> None:
        with self.lock:
            window = [now(), float("inf")]
            self.down.append(window)
            self.proc.kill()
            self.proc.wait()
            time.sleep(pause)
            self.start()
            window[1] = now()

    def stop(self) -> Optional[int]:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def was_down(self, t0: float, t1: float, slack: float = 0.5) -> bool:
        return any(a <= t1 + slack and (b == float("inf") or b + slack >= t0) for a, b in self.down)


def unix_call_ok(path: Path, fn) -> bool:
    if not path.exists():
        return False
    ch = grpc.insecure_channel("unix:" + str(path), options=CHANNEL_OPTIONS)
    try:
        fn(ch)
        return True
    except grpc.RpcError:
        return False
    finally:
        ch.close()


# ---------------------------------------------------------------------------
# The run


@dataclass
class Failure:
    op: str
    cls: str
    code: str
    details: str
    t0: float
    t1: float
    cause: Optional[str] = None


class Chaos:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.csi = compile_proto("csi")
        self.pv = compile_proto("provider")
        self.tmp = Path(tempfile.mkdtemp(prefix="chaos-", dir="/tmp"))
        self.root = self.tmp / "kubelet"  # the kubelet root; targets under <root>/pods
        (self.root / "pods").mkdir(parents=True)
        self.sentinels = [self.tmp / "sentinel", self.root / "sentinel"]
        self.sentinel_files: dict[Path, bytes] = {}
        self.spc_dir = self.tmp / "spc"
        self.prov_dir = self.tmp / "providers"
        self.data_dir = self.tmp / "data"
        for d in (self.spc_dir, self.prov_dir, self.data_dir, self.tmp / "none"):
            d.mkdir()
        self.classes = build_classes(cfg, self.data_dir)
        if cfg.only:
            unknown = set(cfg.only) - {c.name for c in self.classes}
            if unknown:
                raise SystemExit(f"unknown classes: {sorted(unknown)}; known: {[c.name for c in self.classes]}")
            self.classes = [c for c in self.classes if c.name in cfg.only or c.name == "rotating"]
        if cfg.skip:
            unknown = set(cfg.skip) - {c.name for c in self.classes}
            if unknown or "rotating" in cfg.skip:
                raise SystemExit(f"cannot skip {sorted(unknown | ({'rotating'} & set(cfg.skip)))}")
            self.classes = [c for c in self.classes if c.name not in cfg.skip]
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.live: dict[str, tuple[ChaosClass, threading.Lock]] = {}
        self.counts = {k: 0 for k in ("publish_calls", "publish_ok", "unpublish_calls", "unpublish_ok", "republish_calls",
                                      "volumes", "volumes_mounted", "reader_polls", "reader_retries",
                                      "half_built_seen", "wrong_polls", "targets_left", "unpublished_by_restarted_driver", "failed_publish_mounts",
                                      "hostile_accepted")}
        self.failures: list[Failure] = []
        self.samples: dict[str, list] = {"wrong_volumes": [], "targets_left": [], "outside": [], "failed_publish_mounts": [],
                                         "hostile_accepted": [], "unexplained": []}
        self.wrong_targets: set[str] = set()
        self.heavy_calls: list[tuple[float, float]] = []  # publishes of huge answers (they load the provider)
        self.class_mounted: dict[str, int] = {}
        self.wrong_by_class: dict[str, int] = {}
        self.rot_gen = 0
        self.rot_lock = threading.Lock()

    # ---- set-up

    def plant_sentinels(self) -> None:
        for base in self.sentinels:
            for rel in ("escape", "etc/evil", "evil", "link/inner", "passwd"):
                p = base / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                data = f"sentinel {rel}\n".encode()
                p.write_bytes(data)
                self.sentinel_files[p] = data
        # Where a hostile name could land if followed: none of these may come into being.
        self.forbidden = [Path("/etc/evil"), Path("/escape"), Path("/evil"), self.tmp / "escape", self.root / "escape",
                          self.root / "pods" / "escape"]
        self.forbidden_before = {p for p in self.forbidden if os.path.lexists(p)}

    def rotate(self) -> None:
        with self.rot_lock:
            self.rot_gen += 1
            g = self.rot_gen
            rot = next(c for c in self.classes if c.name == "rotating")
            for obj, path in (("rot-a", "rot-a"), ("rot-b", "nested/rot-b")):
                data = f"{obj} generation {g}\n".encode()
                rot.files[path].add(data)  # acceptable from now on (before the file changes)
                tmp = self.data_dir / f".{obj}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, self.data_dir / obj)

    def driver_args(self) -> list[str]:
        help_text = subprocess.run([str(self.cfg.driver_bin), "--help"], capture_output=True, text=True).stdout
        args = [str(self.cfg.driver_bin), "--endpoint", f"unix://{self.tmp}/csi.sock", "--nodeid", "chaos-node",
                "--provider-volume", str(self.prov_dir), "--additional-provider-volume-paths", str(self.tmp / "none"),
                "--spc-dir", str(self.spc_dir), "--enable-secret-rotation", "--rotation-poll-interval", "300ms",
                "--metrics-addr", "0", "--log-level", "warning"]
        self.confined = "--kubelet-root-dir" in help_text
        if self.confined:
            args += ["--kubelet-root-dir", str(self.root)]
        return args

    def start_processes(self) -> None:
        sock = self.prov_dir / f"{PROVIDER}.sock"
        pv = self.pv

        def provider_ready() -> bool:
            return unix_call_ok(sock, lambda ch: pv.grpc.CSIDriverProviderStub(ch).Version(
                pv.pb2.VersionRequest(version="v1alpha1"), timeout=1))

        self.provider = Proc("provider", [str(self.cfg.provider_bin), "--endpoint", f"unix://{sock}", "--data-dir",
                                          str(self.data_dir), "--log-level", "warning"],
                             sock, self.tmp / "provider.log", provider_ready)
        dsock = self.tmp / "csi.sock"
        csi = self.csi

        def driver_ready() -> bool:
            return unix_call_ok(dsock, lambda ch: csi.grpc.IdentityStub(ch).Probe(csi.pb2.ProbeRequest(), timeout=1))

        self.driver = Proc("driver", self.driver_args(), dsock, self.tmp / "driver.log", driver_ready)
        self.provider.start()
        self.driver.start()

    # ---- kubelet

    def call(self, op: str, request) -> tuple[Optional[str], str, float, float]:
        """One CSI call on a fresh connection, as kubelet makes them: (code or None, details, t0, t1)."""
        ch = grpc.insecure_channel(f"unix:{self.tmp}/csi.sock", options=CHANNEL_OPTIONS)
        t0 = now()
        try:
            stub = self.csi.grpc.NodeStub(ch)
            getattr(stub, op)(request, timeout=self.cfg.deadline_s)
            return None, "", t0, now()
        except grpc.RpcError as e:
            return e.code().name, (e.details() or "")[:300], t0, now()
        finally:
            ch.close()

    def publish_request(self, c: ChaosClass, uid: str, target: str):
        pb = self.csi.pb2
        ctx = {"secretProviderClass": c.name, "csi.storage.k8s.io/pod.name": f"pod-{uid[:8]}",
               "csi.storage.k8s.io/pod.namespace": "chaos", "csi.storage.k8s.io/pod.uid": uid,
               "csi.storage.k8s.io/serviceAccount.name": "default", "csi.storage.k8s.io/ephemeral": "true"}
        cap = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(), access_mode=pb.VolumeCapability.AccessMode(
            mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER))
        return pb.NodePublishVolumeRequest(volume_id=f"csi-{uid}", target_path=target, volume_capability=cap,
                                           readonly=True, volume_context=ctx)

    def record_failure(self, op: str, c: ChaosClass, code: str, details: str, t0: float, t1: float) -> None:
        with self.lock:
            self.failures.append(Failure(op, c.name, code, details, t0, t1))


    def pod(self, n: int) -> None:
        """One pod's volume: kubelet's parent directories, publish until it works (or
        the pod gives up), republishes while it runs, unpublish until it works, cleanup."""
        rng = random.Random(self.cfg.seed * 1000003 + n)
        # Every class at least once, first; then by weight.
        c = self.classes[n] if n < len(self.classes) else rng.choices(self.classes, weights=[k.weight for k in self.classes])[0]
        uid = f"{n:08d}-{rng.getrandbits(32):08x}"
        pod_dir = self.root / "pods" / uid
        parent = pod_dir / "volumes" / "kubernetes.io~csi" / "secrets"
        parent.mkdir(parents=True)
        target = str(parent / "mount")
        req = self.publish_request(c, uid, target)
        with self.lock:
            self.counts["volumes"] += 1
        mounted = False
        attempts = 2 if c.always_fails else 6
        for attempt in range(attempts):
            if self.stop.is_set() and attempt > 0:
                break
            code, details, t0, t1 = self.call("NodePublishVolume", req)
            with self.lock:
                self.counts["publish_calls"] += 1
                if c.faults & HEAVY:
                    self.heavy_calls.append((t0, t1))
            if code is None:
                with self.lock:
                    self.counts["publish_ok"] += 1
                if c.always_fails:
                    with self.lock:
                        self.counts["hostile_accepted"] += 1
                        self.sample("hostile_accepted", {"class": c.name, "target": target,
                                                         "names": self.safe_listdir(target)})
                mounted = True
                break
            self.record_failure("publish", c, code, details, t0, t1)
            if code not in NON_FINAL and not self.driver.was_down(t0, now()):
                # Fail closed: a final error leaves no mount a pod could start on.
                if self.is_mount(target):
                    with self.lock:
                        self.counts["failed_publish_mounts"] += 1
                        self.sample("failed_publish_mounts", {"class": c.name, "target": target, "code": code,
                                                              "details": details, "names": self.safe_listdir(target)})
            time.sleep(rng.uniform(0.02, 0.15))
        mounted_by = self.driver.starts
        if mounted:
            with self.lock:
                self.counts["volumes_mounted"] += 1
                self.class_mounted[c.name] = self.class_mounted.get(c.name, 0) + 1
                self.live[target] = (c, threading.Lock())
            end = now() + rng.uniform(*self.cfg.hold_s)
            while now() < end and not self.stop.is_set():
                time.sleep(min(end - now(), rng.uniform(0.1, 0.4)))
                if now() >= end:
                    break
                # requiresRepublish: kubelet republishes a running pod's volume; a failure
                # here keeps the pod running on what it has.
                code, details, t0, t1 = self.call("NodePublishVolume", req)
                with self.lock:
                    self.counts["republish_calls"] += 1
                    self.counts["publish_calls"] += 1
                if code is not None:
                    self.record_failure("republish", c, code, details, t0, t1)
            entry = self.live.get(target)
            with entry[1]:  # no read of this target is in progress from here on
                with self.lock:
                    del self.live[target]
        # Unpublish: kubelet calls it after a publish that worked or may have (and it is
        # idempotent for one that did nothing); it retries until it works.
        unpublish_deadline = now() + max(60.0, self.cfg.deadline_s * 10)
        ureq = self.csi.pb2.NodeUnpublishVolumeRequest(volume_id=f"csi-{uid}", target_path=target)
        while True:
            code, details, t0, t1 = self.call("NodeUnpublishVolume", ureq)
            with self.lock:
                self.counts["unpublish_calls"] += 1
            if code is None:
                with self.lock:
                    self.counts["unpublish_ok"] += 1
                    if mounted and self.driver.starts != mounted_by:
                        # Mounted by a driver process that was killed since: the one that
                        # unmounts it never published it.
                        self.counts["unpublished_by_restarted_driver"] += 1
                break
            self.record_failure("unpublish", c, code, details, t0, t1)
            if now() > unpublish_deadline:
                break
            time.sleep(0.1)
        left = []
        if os.path.lexists(target):
            left.append(f"target exists: {self.safe_listdir(target)}")
        if self.is_mount(target):
            left.append("target is mounted")
        if left:
            with self.lock:
                self.counts["targets_left"] += 1
                self.sample("targets_left", {"class": c.name, "target": target, "what": left})
        # kubelet removes the pod's directories; what they still hold is counted at the end.
        for d in (parent, parent.parent, parent.parent.parent, pod_dir):
            try:
                os.rmdir(d)
            except OSError:
                break

    def sample(self, kind: str, what: dict) -> None:
        if len(self.samples[kind]) < 20:
            self.samples[kind].append(what)

    @staticmethod
    def safe_listdir(p: str) -> list:
        try:
            return sorted(os.listdir(p))[:12]
        except OSError as e:
            return [f"<{errno.errorcode.get(e.errno, e.errno)}>"]

    @staticmethod
    def mount_points() -> set[str]:
        out = set()
        with open("/proc/self/mountinfo") as f:
            for line in f:
                out.add(line.split()[4].encode().decode("unicode_escape"))
        return out

    def is_mount(self, path: str) -> bool:
        return path in self.mount_points()

    # ---- the pod's view

    def check_volume(self, target: str, c: ChaosClass) -> Optional[str]:
        """What is wrong with the volume as a pod sees it, or None. Raises _Retry when
        an update swapped `..data` under the read (a pod would just read again)."""
        try:
            ts = os.readlink(target + "/..data")
        except FileNotFoundError:
            return "no ..data: empty volume"
        except OSError as e:
            return f"..data unreadable: {e.strerror}"
        names = os.listdir(target)
        visible = sorted(n for n in names if not n.startswith(".."))
        expected_top = sorted({p.split("/")[0] for p in c.files})
        extra_dotdot = [n for n in names if n.startswith("..") and n not in ("..data", ts)]
        if extra_dotdot:
            with self.lock:
                self.counts["half_built_seen"] += 1
        if visible != expected_top:
            if os.readlink(target + "/..data") != ts:
                raise _Retry()
            return f"names {visible[:8]} != {expected_top}"
        for path, accepted in c.files.items():
            for via in (f"{target}/{ts}/{path}", f"{target}/{path}"):
                try:
                    with open(via, "rb") as f:
                        data = f.read()
                except OSError as e:
                    if os.readlink(target + "/..data") != ts:
                        raise _Retry()
                    return f"{path}: {e.strerror}"
                if data not in accepted:
                    if c.name == "rotating":
                        with self.rot_lock:  # a generation written after our snapshot of the set
                            if data in c.files[path]:
                                continue
                    return f"{path}: unexpected content ({len(data)} bytes)"
        return None

    def reader(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                snapshot = list(self.live.items())
            if not snapshot:
                time.sleep(0.005)
                continue
            for target, (c, tlock) in snapshot:
                with tlock:
                    with self.lock:
                        if target not in self.live:
                            continue
                    for _ in range(5):
                        try:
                            problem = self.check_volume(target, c)
                            break
                        except _Retry:
                            with self.lock:
                                self.counts["reader_retries"] += 1
                    else:
                        problem = "content kept changing under 5 reads"
                    with self.lock:
                        self.counts["reader_polls"] += 1
                        if problem:
                            self.counts["wrong_polls"] += 1
                            if target not in self.wrong_targets:
                                self.wrong_targets.add(target)
                                self.wrong_by_class[c.name] = self.wrong_by_class.get(c.name, 0) + 1
                                self.sample("wrong_volumes", {"class": c.name, "target": target, "problem": problem,
                                                              "at_s": round(now() - self.t_start, 2)})

    # ---- chaos

    def chaos(self) -> None:
        """Kills spread over the run: provider and driver alternately, at random moments."""
        kills = ["driver"] * self.cfg.driver_kills + ["provider"] * self.cfg.provider_kills
        self.rng.shuffle(kills)
        # Spread over the expected length of the run (calls, not the bound, decide it).
        spacing = self.expected_s / (len(kills) + 1)
        for who in kills:
            if self.stop.wait(self.rng.uniform(0.5, 1.5) * spacing):
                return
            proc = self.driver if who == "driver" else self.provider
            proc.kill_and_restart(self.rng.uniform(0.05, 0.8))
        self.kills_done = True

    def rotator(self) -> None:
        while not self.stop.wait(self.rng.uniform(0.3, 1.2)):
            self.rotate()

    # ---- after

    def scan_outside(self) -> list[str]:
        """Everything under the kubelet root and the sentinels that is not kubelet's own."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            for n in dirnames + filenames:
                p = Path(dirpath) / n
                if p in self.sentinel_files or (rel == "." and n in ("pods", "sentinel")):
                    continue
                if any(str(p) == str(s) or str(s).startswith(str(p) + "/") for s in self.sentinel_files):
                    continue
                found.append(str(p))
        for base in self.sentinels:
            for dirpath, dirnames, filenames in os.walk(base):
                for n in filenames + dirnames:
                    p = Path(dirpath) / n
                    if p.is_dir() and not p.is_symlink():
                        continue
                    if p not in self.sentinel_files:
                        found.append(str(p))
        for p, data in self.sentinel_files.items():
            try:
                if p.is_symlink() or p.read_bytes() != data:
                    found.append(f"{p} changed")
            except OSError:
                found.append(f"{p} missing")
        for p in self.forbidden:
            if os.path.lexists(p) and p not in self.forbidden_before:
                found.append(str(p))
        return sorted(set(found))

    def explain(self, f: Failure) -> Optional[str]:
        """The injected fault that explains a failed call, or None."""
        c = next(k for k in self.classes if k.name == f.cls)
        d = f.details
        if self.driver.was_down(f.t0, f.t1) and f.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"):
            return "driver-killed"
        slow = "latency" in c.faults or c.faults & HEAVY
        if f.op == "unpublish":
            # Unpublish never calls the provider, but it waits its turn behind a refresh in
            # flight on the same volume: a slow provider (or a huge answer) delays it.
            if slow and f.code == "DEADLINE_EXCEEDED":
                return "unpublish-behind-slow-refresh"
            if f.code == "DEADLINE_EXCEEDED" and any(a <= f.t1 and b >= f.t0 for a, b in self.heavy_calls):
                return "busy-with-another-volumes-huge-answer"
            return None
        if self.provider.was_down(f.t0, f.t1) and (f.code == "DEADLINE_EXCEEDED" or (
                f.code == "UNAVAILABLE" and "unreachable" in d and "injected" not in d)):
            return "provider-killed"
        if slow and f.code == "DEADLINE_EXCEEDED":
            return "latency" if "latency" in c.faults else "slow-huge-answer"
        if f.code == "DEADLINE_EXCEEDED" and any(a <= f.t1 and b >= f.t0 for a, b in self.heavy_calls):
            # Another volume's huge answer kept the provider (or the driver) busy meanwhile.
            return "busy-with-another-volumes-huge-answer"
        if "throttled" in c.faults and f.code == "INTERNAL" and "Throttled" in d:
            return "throttled"
        if "rate-limited" in c.faults and f.code in ("INTERNAL", "RESOURCE_EXHAUSTED", "UNAVAILABLE"):
            return "rate-limited"
        if "injected-unavailable" in c.faults and f.code in ("UNAVAILABLE", "INTERNAL"):
            return "injected-unavailable"
        if "injected-internal" in c.faults and f.code == "INTERNAL":
            return "injected-internal"
        if "injected-response" in c.faults and f.code == "INTERNAL" and "InjectedError" in d:
            return "injected-response"
        for fault in c.faults:
            if fault.startswith("hostile:") and f.code in ("INTERNAL", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED",
                                                            "OUT_OF_RANGE"):
                return fault
        return None

    def run(self) -> dict:
        cfg = self.cfg
        self.plant_sentinels()
        for c in self.classes:
            write_spc(self.spc_dir, c)
        self.rotate()
        self.start_processes()
        self.kills_done = False
        # A first guess of the run's length for spreading the kills: about 25 calls/s.
        self.expected_s = min(cfg.bound_s * 0.8, max(8.0, cfg.calls / (12.0 if cfg.quick else 30.0)))
        self.t_start = now()
        threads = [threading.Thread(target=self.reader, name="reader", daemon=True),
                   threading.Thread(target=self.rotator, name="rotator", daemon=True)]
        chaos_t = threading.Thread(target=self.chaos, name="chaos", daemon=True)
        for t in threads + [chaos_t]:
            t.start()
        next_pod = [0]
        pod_lock = threading.Lock()
        errors: list[str] = []

        def worker() -> None:
            while True:
                with self.lock:
                    done = (self.counts["publish_calls"] >= cfg.calls and self.counts["unpublish_calls"] >= cfg.calls
                            and self.kills_done)
                if done or now() - self.t_start > cfg.bound_s:
                    return
                with pod_lock:
                    n = next_pod[0]
                    next_pod[0] += 1
                try:
                    self.pod(n)
                except Exception as e:  # the harness's own bug: report it, never hide it
                    errors.append(f"pod {n}: {type(e).__name__}: {e}")
                    return

        workers = [threading.Thread(target=worker, name=f"kubelet-{i}") for i in range(cfg.workers)]
        for w in workers:
            w.start()
        last = now()
        while any(w.is_alive() for w in workers):
            time.sleep(0.5)
            if now() - last >= 10:
                last = now()
                with self.lock:
                    print(f"  {now() - self.t_start:6.1f}s publishes {self.counts['publish_calls']} unpublishes "
                          f"{self.counts['unpublish_calls']} polls {self.counts['reader_polls']} "
                          f"driver restarts {self.driver.starts - 1} provider restarts {self.provider.starts - 1}",
                          flush=True)
        self.stop.set()
        for w in workers:
            w.join()
        for t in threads + [chaos_t]:
            t.join(timeout=30)
        elapsed = now() - self.t_start
        time.sleep(0.2)
        mounts_left = sorted(p for p in self.mount_points() if p.startswith(str(self.tmp) + "/"))
        outside = self.scan_outside()
        driver_rc = self.driver.stop()
        provider_rc = self.provider.stop()
        explained: dict[str, int] = {}
        by_code: dict[str, int] = {}
        unexplained = 0
        for f in self.failures:
            f.cause = self.explain(f)
            key = f"{f.op}:{f.code}"
            by_code[key] = by_code.get(key, 0) + 1
            if f.cause is None:
                unexplained += 1
                self.sample("unexplained", {"op": f.op, "class": f.cls, "code": f.code, "details": f.details,
                                            "at_s": round(f.t0 - self.t_start, 2)})
            else:
                explained[f.cause] = explained.get(f.cause, 0) + 1
        self.samples["outside"] = outside[:20]
        per_class: dict[str, dict] = {c.name: {} for c in self.classes}
        for f in self.failures:
            k = f"{f.op}:{f.code}:{f.cause or 'UNEXPLAINED'}"
            per_class[f.cls][k] = per_class[f.cls].get(k, 0) + 1
        for c in self.classes:
            per_class[c.name]["mounted"] = self.class_mounted.get(c.name, 0)
            if self.wrong_by_class.get(c.name):
                per_class[c.name]["wrong_volumes"] = self.wrong_by_class[c.name]
        counts = {
            "wrong_volumes": len(self.wrong_targets),
            "files_outside_targets": len(outside),
            "targets_left": self.counts["targets_left"],
            "mounts_left": len(mounts_left),
            "unexplained_failures": unexplained,
            "failed_publish_mounts": self.counts["failed_publish_mounts"],
            "hostile_accepted": self.counts["hostile_accepted"],
        }
        result = {
            "mode": "quick" if cfg.quick else "full",
            "driver_bin": str(cfg.driver_bin),
            "provider_bin": str(cfg.provider_bin),
            "driver_has_kubelet_root_dir": self.confined,
            "seed": cfg.seed,
            "elapsed_s": round(elapsed, 1),
            "kubelet_deadline_s": cfg.deadline_s,
            "counts": counts,
            "activity": dict(self.counts, driver_restarts=self.driver.starts - 1,
                             provider_restarts=self.provider.starts - 1, rotations=self.rot_gen),
            "failures_by_code": dict(sorted(by_code.items())),
            "failures_explained_by": dict(sorted(explained.items())),
            "per_class": per_class,
            "mounts_left_list": mounts_left[:20],
            "samples": {k: v for k, v in self.samples.items() if v},
            "harness_errors": errors,
            "driver_exit_on_sigterm": driver_rc,
            "provider_exit_on_sigterm": provider_rc,
            "reached_calls": self.counts["publish_calls"] >= cfg.calls and self.counts["unpublish_calls"] >= cfg.calls,
            "work_dir": str(self.tmp),
        }
        return result

    def cleanup(self) -> None:
        for p in sorted(self.mount_points(), key=len, reverse=True):
            if p.startswith(str(self.tmp) + "/"):
                subprocess.run(["umount", "-l", p], check=False)
        for proc in (getattr(self, "driver", None), getattr(self, "provider", None)):
            if proc and proc.proc and proc.proc.poll() is None:
                proc.proc.kill()
                proc.proc.wait()
        if not self.cfg.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


class _Retry(Exception):
    pass


def print_table(r: dict) -> None:
    print(f"\nchaos run ({r['mode']}): {r['elapsed_s']} s, kubelet deadline {r['kubelet_deadline_s']} s, "
          f"driver {r['driver_bin']}")
    a = r["activity"]
    print(f"  publishes {a['publish_calls']} ({a['publish_ok']} ok, {a['republish_calls']} republishes), "
          f"unpublishes {a['unpublish_calls']} ({a['unpublish_ok']} ok), volumes {a['volumes']} "
          f"({a['volumes_mounted']} mounted, {a['unpublished_by_restarted_driver']} unpublished by a restarted driver), "
          f"reader polls {a['reader_polls']}")
    print(f"  driver restarts {a['driver_restarts']}, provider restarts {a['provider_restarts']}, "
          f"rotations {a['rotations']}, half-built ..timestamp dirs seen {a['half_built_seen']}")
    print(f"  {'count':28} {'value':>7}  goal")
    for k, v in r["counts"].items():
        print(f"  {k:28} {v:>7}  0{'   <-- FAIL' if v else ''}")
    print("  failures explained by: " + ", ".join(f"{k} {v}" for k, v in r["failures_explained_by"].items()))
    print("  failures by call and code: " + ", ".join(f"{k} {v}" for k, v in r["failures_by_code"].items()))
    wrong = {k: v["wrong_volumes"] for k, v in r["per_class"].items() if v.get("wrong_volumes")}
    if wrong:
        print("  wrong volumes by class: " + ", ".join(f"{k} {v}" for k, v in wrong.items()))
    for kind, items in r["samples"].items():
        print(f"  {kind} (first {len(items)}):")
        for it in items[:8]:
            print(f"    {json.dumps(it)[:300]}")
    for e in r["harness_errors"]:
        print(f"  harness error: {e}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run for CI (debug build, about 30 s)")
    ap.add_argument("--driver-bin", type=Path)
    ap.add_argument("--provider-bin", type=Path)
    ap.add_argument("--calls", type=int, help="publishes and unpublishes, each at least (full 10000, quick 150)")
    ap.add_argument("--bound", type=float, help="stop starting pods after this many seconds (full 1500, quick 20)")
    ap.add_argument("--workers", type=int, help="concurrent pods (full 24, quick 12)")
    ap.add_argument("--deadline", type=float, help="kubelet's grpc-timeout in seconds (full 4, quick 4)")
    ap.add_argument("--driver-kills", type=int)
    ap.add_argument("--provider-kills", type=int)
    ap.add_argument("--only", help="comma-separated class names: run only these (to reproduce one finding)")
    ap.add_argument("--skip", help="comma-separated class names: leave these out")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("chaos.py needs root (the driver mounts tmpfs)", file=sys.stderr)
        return 2
    build = "debug" if a.quick else "release"
    cfg = Config(
        quick=a.quick,
        driver_bin=(a.driver_bin or REPO / ".build" / build / "secrets-store-csi-driver").resolve(),
        provider_bin=(a.provider_bin or REPO / ".build" / build / "csi-reference-provider").resolve(),
        calls=a.calls or (150 if a.quick else 10000),
        bound_s=a.bound or (20.0 if a.quick else 1500.0),
        workers=a.workers or (12 if a.quick else 24),
        deadline_s=a.deadline or 4.0,
        hold_s=(0.1, 1.0) if a.quick else (0.1, 1.5),
        driver_kills=a.driver_kills if a.driver_kills is not None else (2 if a.quick else 6),
        provider_kills=a.provider_kills if a.provider_kills is not None else (2 if a.quick else 6),
        out=a.out, keep=a.keep, seed=a.seed, only=a.only.split(",") if a.only else None,
        skip=a.skip.split(",") if a.skip else None)
    for b in (cfg.driver_bin, cfg.provider_bin):
        if not os.access(b, os.X_OK):
            print(f"{b} not found: build it first (swift build{'' if a.quick else ' -c release'})", file=sys.stderr)
            return 2
    run = Chaos(cfg)
    try:
        result = run.run()
    finally:
        run.cleanup()
    if cfg.out:
        cfg.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"counts": result["counts"], "activity": result["activity"]}))
    print_table(result)
    if any(result["counts"].values()) or result["harness_errors"]:
        return 1
    if not result["reached_calls"]:
        print(f"  the run stopped at its {cfg.bound_s} s bound before {cfg.calls} publishes and unpublishes")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
