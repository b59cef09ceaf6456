"""Secret material kubelet hands the driver must never reach its logs
(CVE-2023-2878: upstream once logged service-account tokens) nor be echoed
back in error details."""

from __future__ import annotations

import base64
import json
import os
import secrets as pysecrets
import signal

import grpc
import pytest

from support import debug_log_flags, run_cmd, valid_publish_request, wait_until

T = 10
TOKENS_KEY = "csi.storage.k8s.io/serviceAccount.tokens"


def sentinels() -> dict[str, str]:
    tag = pysecrets.token_hex(8)
    return {
        "secret": f"SECRETVALUE{tag}",
        "secret_key_value": f"PASSWORDVALUE{tag}",
        "token_ctx": f"TOKENCTX{tag}",
        "token_secrets": f"TOKENSEC{tag}",
    }


def tokens_json(token: str) -> str:
    return json.dumps({"vault": {"token": token, "expirationTimestamp": "2030-01-01T00:00:00Z"},
                       "": {"token": token, "expirationTimestamp": "2030-01-01T00:00:00Z"}})


def leak_forms(value: str) -> list[str]:
    """The value and the encodings a careless logger might print it in."""
    raw = value.encode()
    return [value, base64.b64encode(raw).decode().rstrip("="), raw.hex(),
            json.dumps(value)[1:-1]]


def exercise(csi, driver, workdir, s: dict[str, str]) -> list[str]:
    """Send the secrets along every path kubelet could; return all error details."""
    node = csi.grpc.NodeStub(driver.channel())
    sec = {"password": s["secret"], "username": "admin", "apikey": s["secret_key_value"],
           TOKENS_KEY: tokens_json(s["token_secrets"])}
    ctx = {TOKENS_KEY: tokens_json(s["token_ctx"])}
    details: list[str] = []
    reqs = []
    full = valid_publish_request(csi, workdir, secrets=sec, extra_context=ctx)
    reqs.append(full)
    for missing in ("volume_id", "target_path", "volume_capability"):
        r = valid_publish_request(csi, workdir, secrets=sec, extra_context=ctx)
        r.ClearField(missing)
        reqs.append(r)
    not_readonly = valid_publish_request(csi, workdir, secrets=sec, extra_context=ctx)
    not_readonly.readonly = False
    reqs.append(not_readonly)
    no_spc = valid_publish_request(csi, workdir, secrets=sec, extra_context=ctx)
    del no_spc.volume_context["secretProviderClass"]
    reqs.append(no_spc)
    for req in reqs:
        try:
            node.NodePublishVolume(req, timeout=T)
        except grpc.RpcError as e:
            details.append(e.details() or "")
    # Over the size limit, with the secrets up front.
    big = valid_publish_request(csi, workdir, secrets=sec,
                                extra_context={**ctx, "pad": "p" * (5 * 1024 * 1024)})
    try:
        node.NodePublishVolume(big, timeout=T)
    except grpc.RpcError as e:
        details.append(e.details() or "")
    # Valid bytes up to the secret, then cut off: a decoder error must not dump the buffer.
    raw = full.SerializeToString()
    cut = raw[: raw.index(s["secret"].encode()) + 4] + b"\xff"
    try:
        driver.channel().unary_unary("/csi.v1.Node/NodePublishVolume")(cut, timeout=T)
    except grpc.RpcError as e:
        details.append(e.details() or "")
    return details


@pytest.mark.parametrize("json_logs", [False, True], ids=["text-logs", "json-logs"])
def test_secrets_and_tokens_never_logged(start_driver, driver_path, csi, workdir, json_logs):
    help_text = run_cmd([str(driver_path), "--help"]).stdout
    flags = debug_log_flags(help_text) + (["--log-format-json"] if json_logs else [])
    d = start_driver(*flags)
    s = sentinels()
    details = exercise(csi, d, workdir, s)
    assert d.stop(signal.SIGTERM) == 0, d.describe()
    log = d.stderr() + d.stdout()
    assert log.strip(), "driver logged nothing, so this test proves nothing"
    for name, value in s.items():
        for form in leak_forms(value):
            assert form not in log, f"{name} appears in the driver's log (as {form!r})"
            for det in details:
                assert form not in det, f"{name} echoed in an error's details: {det!r}"


# ---- provider text: a provider that echoes everything it was sent


def all_forms(value: str) -> list[str]:
    """leak_forms, plus every 16-byte piece (a provider may cut a token short)."""
    pieces = [value[i:i + 16] for i in range(0, len(value) - 15)]
    return leak_forms(value) + pieces


def scan_for_leaks(where: str, text: str, s: dict[str, str]) -> list[str]:
    found = []
    for name, value in s.items():
        for form in all_forms(value):
            if form in text:
                found.append(f"{name} in {where} (as a form {len(form)} characters long)")
                break
    return found


def files_outside_volumes(root, skip) -> list:
    """Regular files under the kubelet root the driver could have written (state,
    caches), apart from the test's own inputs and the driver's logs."""
    out = []
    for dirpath, _dirs, names in os.walk(root):
        if any(str(dirpath).startswith(str(p)) for p in skip):
            continue
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out


@pytest.mark.parametrize("log_flags", [["--log-level", "trace"], ["--log-level", "trace", "--log-format-json"],
                                       ["-v=10", "--log-format-json"]],
                         ids=["text-trace", "json-trace", "json-v10"])
def test_provider_echoes_never_leak(mount_env, csi, log_flags):
    """A provider that echoes the request (tokens, nodePublishSecretRef values,
    parameters) into its gRPC error, its MountResponse error code, file names,
    file contents and its Version errors: first mounts, refreshes and health
    checks, at the most verbose logging. Nothing of it may reach the driver's
    output, the status kubelet gets, or files the driver writes."""
    from mounting import publish_request, read_volume, target_path, unpublish_request, write_spc

    env = mount_env
    s = sentinels()
    s["param"] = f"PARAMVALUE{pysecrets.token_hex(8)}"
    s["ctx_value"] = f"CTXVALUE{pysecrets.token_hex(8)}"
    write_spc(env.spcs, "my-spc", parameters={"objects": "secret.txt", "apiKey": s["param"]})
    # No backoff to speak of: every failing republish reaches the provider.
    d = env.start("--enable-secret-rotation", "--rotation-poll-interval", "1ns", "--rotation-backoff-base=1ns",
                  "--provider-health-check", "--provider-health-check-interval", "100ms", *log_flags)
    node = env.node()
    sec = {"password": s["secret"], "username": "admin", "apikey": s["secret_key_value"],
           TOKENS_KEY: tokens_json(s["token_secrets"])}
    ctx = {TOKENS_KEY: tokens_json(s["token_ctx"]), "customAttribute": s["ctx_value"]}
    target = target_path(env.root, "uid-leak")
    req = publish_request(csi, target, pod_uid="uid-leak", secrets=sec, extra_context=ctx)
    details: list[str] = []
    codes = []

    def publish(expect_ok: bool) -> None:
        try:
            node.NodePublishVolume(req, timeout=T)
            assert expect_ok, f"publish with echo={env.provider.echo} succeeded"
        except grpc.RpcError as e:
            assert not expect_ok, f"publish failed: {e.code()} {e.details()}"
            details.append(e.details() or "")
            codes.append(e.code())

    # First mounts that fail, each with the echo somewhere else.
    for where in ("status", "code", "path", "mode"):
        env.provider.echo = where
        publish(expect_ok=False)
    assert len(details) == 4 and all(details), details
    # A mount that succeeds with the echo in a file: that is the product, in the volume only.
    env.provider.echo = "contents"
    publish(expect_ok=True)
    assert s["secret"].encode() in read_volume(target)["echo.txt"][1]
    # Refreshes (every republish is due) that fail: success for kubelet, a logged failure.
    for where in ("status", "code", "path", "mode"):
        env.provider.echo = where
        publish(expect_ok=True)
    wait_until(lambda: d.stderr().count("refresh failed") >= 4, 15, "four logged refresh failures")
    # Health checks whose Version fails echoing the last Mount request.
    env.provider.echo_version = True
    wait_until(lambda: "provider health check failed" in d.stderr(), 15, "a logged health-check failure")
    # It recovers, naming itself with the echo: the driver logs that name too.
    from fake_provider import echo_text
    env.provider.version = ("v1alpha1", echo_text(env.provider.calls("Mount")[-1])[:400], "1.0")
    env.provider.echo_version = False
    wait_until(lambda: "provider healthy again" in d.stderr(), 15, "a logged recovery")
    node.NodeUnpublishVolume(unpublish_request(csi, target, pod_uid="uid-leak"), timeout=T)
    assert d.stop(signal.SIGTERM) == 0, d.describe()

    log = d.stderr() + d.stdout()
    assert "[redacted]" in log, "nothing was redacted, so the echo never reached the driver"
    leaks = scan_for_leaks("the driver's output", log, s)
    for det in details:
        leaks += scan_for_leaks("a status message returned to kubelet", det, s)
    written = files_outside_volumes(env.root, skip=[env.spcs])
    for path in written:
        with open(path, "rb") as f:
            leaks += scan_for_leaks(path, f.read().decode("utf-8", "replace"), s)
    assert not leaks, leaks
    # Control characters from the provider never reach a log line or a status.
    for det in details:
        assert not any(ord(c) < 0x20 or c in "\x7f\u202e" for c in det), "a control character in a status"
        assert len(det.encode()) <= 1024
    assert "\x1b" not in log and "\u202e" not in log


def test_provider_call_tool_never_echoes_secrets(provider, provider_call):
    """csi-provider-call: a provider's error text and the JSON decoder's complaints
    about a command reach its output only scrubbed."""
    s = sentinels()
    attributes = json.dumps({"objects": "x", TOKENS_KEY: tokens_json(s["token_ctx"])})
    secrets = json.dumps({"password": s["secret"], "apikey": s["secret_key_value"]})
    provider.echo = "status"
    pc = provider_call(provider.endpoint)
    outputs = []
    result = pc.call({"method": "Mount", "attributes": attributes, "secrets": secrets,
                      "target_path": "/t", "permission": "420", "timeout_ms": 5000})
    assert result["ok"] is False and result["code"] == "PERMISSION_DENIED", result.get("code")
    assert "[redacted]" in result["message"]
    outputs.append(result["message"])
    # Commands the decoder rejects, with secrets where the decoder looks.
    for bad in ({"method": "Mount", "attributes": {"password": s["secret"]}},
                {"method": "Mount", "secrets": secrets, "timeout_ms": s["token_secrets"]},
                {"method": s["token_secrets"]}):
        result = pc.call(bad)
        assert result["ok"] is False and result["code"] == "INVALID_ARGUMENT", result.get("code")
        outputs.append(result["message"])
    # A line that is not JSON at all (cut short after a secret).
    assert pc.proc.stdin is not None
    pc.proc.stdin.write(f'{{"method": "Mount", "secrets": "{s["secret"]}\n'.encode())
    pc.proc.stdin.flush()
    outputs.append(pc._lines.get(timeout=T).decode())
    outputs.append(pc.stderr())
    leaks = []
    for i, text in enumerate(outputs):
        leaks += scan_for_leaks(f"output {i}", text, s)
    assert not leaks, leaks
