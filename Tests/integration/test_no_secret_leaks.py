"""Secret material kubelet hands the driver must never reach its logs
(CVE-2023-2878: upstream once logged service-account tokens) nor be echoed
back in error details."""

from __future__ import annotations

import base64
import json
import secrets as pysecrets
import signal

import grpc
import pytest

from support import debug_log_flags, run_cmd, valid_publish_request

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
