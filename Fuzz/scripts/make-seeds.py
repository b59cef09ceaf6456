#!/usr/bin/env python3
"""Writes the committed seed corpora (Fuzz/Corpus/<target>/) from readable definitions.
Standard library only: protobuf, HPACK and HTTP/2 framing are encoded by hand here.
Run from anywhere: python3 Fuzz/scripts/make-seeds.py"""
import base64
import json
import os
import struct
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "Corpus"


# --- protobuf wire format ---
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, value):
    return varint(num << 3) + varint(value)


def pb_map(num, mapping):
    return b"".join(field_bytes(num, field_bytes(1, k) + field_bytes(2, v)) for k, v in mapping.items())


TOKENS = json.dumps({"vault": {"token": "eyJhbGciOiJSUzI1NiJ9.fuzz-token-1", "expirationTimestamp": "2026-12-03T08:00:00Z"}})
CONTEXT = {
    "secretProviderClass": "app-secrets",
    "csi.storage.k8s.io/pod.name": "app-0",
    "csi.storage.k8s.io/pod.namespace": "default",
    "csi.storage.k8s.io/pod.uid": "0d2b8f6e-1111-2222-3333-444455556666",
    "csi.storage.k8s.io/serviceAccount.name": "app",
    "csi.storage.k8s.io/serviceAccount.tokens": TOKENS,
    "csi.storage.k8s.io/ephemeral": "true",
}
TARGET = "/var/lib/kubelet/pods/0d2b8f6e/volumes/kubernetes.io~csi/secrets/mount"
CAPABILITY = field_bytes(2, field_bytes(1, "tmpfs")) + field_bytes(3, field_varint(1, 2))


def publish_request(context=CONTEXT, secrets=None):
    return (field_bytes(1, "csi-1234") + field_bytes(4, TARGET) + field_bytes(5, CAPABILITY) + field_varint(6, 1)
            + pb_map(7, secrets or {}) + pb_map(8, context))


def pb_file(path, mode, contents):
    return field_bytes(1, path) + field_varint(2, mode) + field_bytes(3, contents)


def mount_response(files, versions=(("db", "v1"),), error=None):
    out = b"".join(field_bytes(1, field_bytes(1, i) + field_bytes(2, v)) for i, v in versions)
    if error is not None:
        out += field_bytes(2, field_bytes(1, error))
    return out + b"".join(field_bytes(3, pb_file(*f)) for f in files)


# Indices into FuzzMessages' `messages` table.
MESSAGES = {
    "publish": (0, publish_request(secrets={"password": "hunter2-hunter2"})),
    "unpublish": (1, field_bytes(1, "csi-1234") + field_bytes(2, TARGET)),
    "getinfo": (2, b""),
    "stage": (7, field_bytes(1, "v") + field_bytes(3, "/staging") + field_bytes(4, CAPABILITY)),
    "stats": (9, field_bytes(1, "v") + field_bytes(2, TARGET)),
    "mountrequest": (11, field_bytes(1, json.dumps(CONTEXT)) + field_bytes(2, "null") + field_bytes(3, TARGET)
                     + field_bytes(4, "420") + field_bytes(5, field_bytes(1, "db") + field_bytes(2, "v1"))),
    "mountresponse": (12, mount_response([("db/password", 0o440, b"s3cret"), ("config.json", 0, b"{}")])),
    "version": (14, field_bytes(1, "v1alpha1") + field_bytes(2, "fuzz") + field_bytes(3, "0.1")),
    # Strings that must be refused whole: a NUL byte in the target, invalid UTF-8 in a map value.
    "publish-nul": (0, field_bytes(1, "csi-1234") + field_bytes(4, TARGET + "\0/../../x") + pb_map(8, CONTEXT)),
    "publish-bad-utf8": (0, field_bytes(1, "csi-1234") + field_bytes(4, TARGET)
                         + field_bytes(8, field_bytes(1, "k") + field_bytes(2, b"\xc0\x80"))),
    "probe-response": (16, field_bytes(1, field_varint(1, 1))),
    "node-info-response": (19, field_bytes(1, "node-1") + field_varint(2, 10)),
}

PROVIDER_RESPONSES = {
    "ok": mount_response([("db/password", 0o440, b"s3cret"), ("config.json", 0, b"{}"), ("a/b/c", 0o600, b"x")]),
    "error": mount_response([], error="ThrottlingException"),
    "traversal": mount_response([("../escape", 0o644, b"x"), ("/etc/passwd", 0o644, b"x")]),
    "clash": mount_response([("a", 0o644, b"x"), ("a/b", 0o644, b"y")]),
    "duplicate": mount_response([("a", 0o644, b"x"), ("a", 0o600, b"y")]),
    "bad-mode": mount_response([("a", 0o17777, b"x"), ("b", -1, b"y")]),
    "reserved": mount_response([("..data/x", 0o644, b"x"), ("d/..2026", 0o644, b"y")]),
    "no-versions": mount_response([("a", 0o644, b"x")], versions=()),
    "nul-path": mount_response([("ok", 0o644, b"x"), ("ok\0/../../escape", 0o644, b"y")]),
    "bad-utf8-version": mount_response([("a", 0o644, b"x")], versions=(("a", b"\xed\xa0\x80"),)),
}


# --- HTTP/2 (after the client preface, which the harness sends) ---
def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack(headers):
    """Literal header fields without indexing, new names, no Huffman."""
    out = bytearray()
    for name, value in headers:
        name, value = name.encode(), value.encode()
        out += b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value
    return bytes(out)


SETTINGS = frame(4, 0, 0, b"")
SETTINGS_ACK = frame(4, 1, 0, b"")
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def request_headers(path="/csi.v1.Node/NodeGetInfo", method="POST", content_type="application/grpc", extra=()):
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", "localhost"),
            ("content-type", content_type), ("te", "trailers"), *extra]


def grpc_message(payload, compressed=0, length=None):
    return bytes([compressed]) + struct.pack(">I", len(payload) if length is None else length) + payload


def headers_frame(stream, headers, end_stream=False):
    return frame(1, END_HEADERS | (END_STREAM if end_stream else 0), stream, hpack(headers))


def data_frame(stream, payload, end_stream=True):
    return frame(0, END_STREAM if end_stream else 0, stream, payload)


PUBLISH = publish_request()
H2 = {
    "unary": SETTINGS + headers_frame(1, request_headers(extra=[("grpc-timeout", "5S")])) + data_frame(1, grpc_message(b"")),
    "publish-metadata": SETTINGS + headers_frame(1, request_headers(
        "/csi.v1.Node/NodePublishVolume",
        extra=[("grpc-timeout", "120000m"), ("x-trace-bin", base64.b64encode(b"\x00\x01\x02").decode()), ("x-user", "a")]))
        + data_frame(1, grpc_message(PUBLISH)),
    "split-message": SETTINGS + headers_frame(1, request_headers()) + data_frame(1, grpc_message(PUBLISH)[:7], False)
        + data_frame(1, grpc_message(PUBLISH)[7:]),
    "two-messages-trailers": SETTINGS + headers_frame(1, request_headers()) + data_frame(1, grpc_message(b"ab") + grpc_message(b"cd"), False)
        + headers_frame(1, [("x-trailer", "1")], end_stream=True),
    "get": SETTINGS + headers_frame(1, request_headers(method="GET"), end_stream=True),
    "bad-content-type": SETTINGS + headers_frame(1, request_headers(content_type="text/plain"), end_stream=True),
    "gzip": SETTINGS + headers_frame(1, request_headers(extra=[("grpc-encoding", "gzip")]), end_stream=True),
    "bad-path": SETTINGS + headers_frame(1, request_headers(path="/nope"), end_stream=True),
    "compressed-flag": SETTINGS + headers_frame(1, request_headers()) + data_frame(1, grpc_message(b"x", compressed=1)),
    "too-large": SETTINGS + headers_frame(1, request_headers()) + data_frame(1, grpc_message(b"x", length=1 << 30)),
    "reset": SETTINGS + headers_frame(1, request_headers()) + frame(3, 0, 1, struct.pack(">I", 8)),
    "many-streams": SETTINGS + b"".join(headers_frame(s, request_headers(), end_stream=True) for s in range(1, 40, 2)),
    "ping-window-goaway": SETTINGS + SETTINGS_ACK + frame(6, 0, 0, b"12345678") + frame(8, 0, 0, struct.pack(">I", 1 << 20))
        + headers_frame(1, request_headers()) + frame(7, 0, 0, struct.pack(">II", 1, 0)),
    "probe": SETTINGS + headers_frame(1, request_headers("/csi.v1.Identity/Probe")) + data_frame(1, grpc_message(b"")),
    "identity-and-caps": SETTINGS + headers_frame(1, request_headers("/csi.v1.Identity/GetPluginInfo")) + data_frame(1, grpc_message(b""))
        + headers_frame(3, request_headers("/csi.v1.Identity/GetPluginCapabilities")) + data_frame(3, grpc_message(b""))
        + headers_frame(5, request_headers("/csi.v1.Node/NodeGetCapabilities")) + data_frame(5, grpc_message(b"")),
    "unpublish": SETTINGS + headers_frame(1, request_headers("/csi.v1.Node/NodeUnpublishVolume", extra=[("grpc-timeout", "2M")]))
        + data_frame(1, grpc_message(field_bytes(1, "csi-1234") + field_bytes(2, TARGET))),
    "stage-unimplemented": SETTINGS + headers_frame(1, request_headers("/csi.v1.Node/NodeStageVolume")) + data_frame(1, grpc_message(b"")),
    "bad-timeout": SETTINGS + headers_frame(1, request_headers(extra=[("grpc-timeout", "99999999999H")]), end_stream=True),
}

SPC = {
    "v1.yaml": """apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: app-secrets
  namespace: default
spec:
  provider: vault
  parameters:
    roleName: app
    objects: |
      - objectName: db-password
        secretPath: secret/data/db
        secretKey: password
""",
    "multi.yaml": """---
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
---
apiVersion: secrets-store.csi.x-k8s.io/v1alpha1
kind: SecretProviderClass
metadata: {name: a}
spec: {provider: aws, parameters: {region: eu-west-1, count: "3"}}
---
""",
    "invalid.yaml": """apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: bad
spec:
  provider: "not valid/../"
  parameters: [1, 2]
""",
    "anchors.yaml": """base: &b {provider: gcp}
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: anchored}
spec: *b
""",
    # Regression: an anchor on an empty namespace was accepted as namespace "".
    "empty-namespace-anchor.yaml": """apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: app-secrets
  namespace: &efault
spec:
  provider: vault
""",
    "json.json": json.dumps({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
                             "metadata": {"name": "j"}, "spec": {"provider": "azure", "parameters": {"k": "v"}}}),
}

VOLUME_CONTEXT = {
    "full": "\n".join(["c%s=%s" % kv for kv in CONTEXT.items()] + ["spassword=hunter2-hunter2", "p" + TARGET]),
    "short-keys": "c#0=app\nc#2=ns\nc#5=%s\ncrole=db-admin-password\ns#5=%s\n" % (TOKENS, TOKENS),
    "escapes": 'c#0=a\nc#2=b\ncquote="\\\u2028\x7f\ns#5={"aud":{"token":"t\\u00e9st-token"}}\n',
    "bad-target": "c#0=a\nc#2=b\np/var/lib/kubelet/../../etc\n",
}

SPC_OBJECT = {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
              "metadata": {"name": "app-secrets", "namespace": "default", "resourceVersion": "42", "uid": "u"},
              "spec": {"provider": "vault", "parameters": {"roleName": "app"},
                       "secretObjects": [{"secretName": "s", "type": "Opaque", "labels": {"a": "b"},
                                          "data": [{"objectName": "db", "key": "password"}]}]}}
KUBE = {
    "spc-added": (0, json.dumps({"type": "ADDED", "object": SPC_OBJECT})),
    "spc-bookmark": (0, json.dumps({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "99"}}})),
    "spc-error": (0, json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}})),
    "podstatus": (1, json.dumps({"type": "MODIFIED", "object": {
        "metadata": {"name": "app-0-default-app-secrets", "namespace": "default", "labels": {"internal.secrets-store.csi.k8s.io/node-name": "n"}},
        "status": {"podName": "app-0", "secretProviderClassName": "app-secrets", "mounted": True, "targetPath": TARGET,
                   "objects": [{"id": "db", "version": "v1"}]}}})),
    "secret": (2, json.dumps({"type": "ADDED", "object": {"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "dmFsdWU="}}})),
    "pod": (3, json.dumps({"type": "DELETED", "object": {"metadata": {"name": "p", "uid": "u"}, "spec": {"nodeName": "n"}}})),
    "event": (4, json.dumps({"type": "ADDED", "object": {"metadata": {"name": "e"}, "reason": "Mounted", "message": "m",
                                                         "involvedObject": {"kind": "Pod", "name": "p"}, "count": 1}})),
    "list": (5, json.dumps({"kind": "SecretProviderClassList", "metadata": {"resourceVersion": "5", "continue": "c"}, "items": [SPC_OBJECT]})),
    "status": (6, json.dumps({"kind": "Status", "status": "Failure", "code": 409, "reason": "Conflict", "message": "exists",
                              "details": {"name": "x", "kind": "pods"}})),
    "kubeconfig": (7, """apiVersion: v1
kind: Config
current-context: fuzz
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: "LS0tLS1CRUdJTg==", insecure-skip-tls-verify: true}
contexts:
- name: fuzz
  context: {cluster: c, user: u, namespace: kube-system}
users:
- name: u
  user: {token: abc.def, client-certificate-data: "Zm9v", client-key-data: "YmFy"}
"""),
}


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def main():
    for name, (selector, body) in MESSAGES.items():
        write("FuzzMessages", name, bytes([selector]) + body)
    for name, body in PROVIDER_RESPONSES.items():
        write("FuzzProviderResponse", name, body)
    for name, body in H2.items():
        write("FuzzH2Server", name, body)
    for name, body in SPC.items():
        write("FuzzSecretProviderClass", name, body)
    for name, body in VOLUME_CONTEXT.items():
        write("FuzzVolumeContext", name, body)
    for name, (selector, body) in KUBE.items():
        write("FuzzKubeJSON", name, bytes([selector]) + body.encode())


if __name__ == "__main__":
    main()
