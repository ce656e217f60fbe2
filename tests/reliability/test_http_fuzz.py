"""Schemathesis against each front door's own /openapi.json, served by a real app (supervisor +
worker processes): no 5xx, documented answers, no dead worker, no traceback in the app's log, and
a real request answered correctly afterwards."""

from __future__ import annotations

import pytest

from tests.reliability.checks import answers, make_small_clip
from tests.reliability.fuzz_http import fuzz
from tests.reliability.servers import ServerApp

SERVER_ARGS = {
    "ImageServer": {"timeout": 10, "max_body": 4_000_000},
    "BytesServer": {"timeout": 10, "max_body": 4_000_000},
    "VideoServer": {"timeout": 10},
}


@pytest.mark.parametrize("server", ["ImageServer", "BytesServer", "VideoServer", "VideoServer+auth"])
def test_generated_requests_get_no_server_error(server, tmp_path, figures, sizes):
    """``+auth``: the app has ``[auth]`` and every request carries an operator's token."""
    server, _, auth = server.partition("+")
    clips = tmp_path / "clips"
    clips.mkdir()
    clip = make_small_clip(clips)
    args = dict(SERVER_ARGS[server])
    if server == "VideoServer":
        args["allow_dirs"] = [str(clips)]
    headers = None
    if auth:
        from tests.integration.auth_apps import AuthApp, make_tokens

        tokens_file, tokens = make_tokens(tmp_path)
        headers = {"Authorization": f"Bearer {tokens['operator']}"}
        app = AuthApp.start_with(tmp_path, server, tokens_file, **args)
    else:
        app = ServerApp.start(tmp_path, server, **args)
    try:
        result = fuzz(app.url, sizes.http_requests, headers=headers)
        alive_after_fuzz = app.workers_alive()
        wrong = answers(server, app.url, clip, headers)
        alive = alive_after_fuzz and app.workers_alive()
        tracebacks = [line for line in app.log_problems() if "Traceback" in line or "Exception in ASGI" in line]
    finally:
        code = app.stop()
    section = "HTTP fuzzing (schemathesis, each server's own /openapi.json)"
    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(result.statuses.items()))
    figures.add(section, f"{server}: generated requests, positive + negative; answered without a 5xx",
                result.requests + len(result.transport_errors), result.requests - len(result.server_errors),
                result.lost,
                [f"statuses {statuses}; per operation {dict(result.operations)}; not sent: {result.skipped} "
                 f"(a network URL), {result.unsendable} (schemathesis could not build the request)"]
                + result.unsendable_examples + [f"client error: {e}" for e in result.harness_errors[:3]]
                + [f"5xx: {e}" for e in result.server_errors[:3]]
                + [f"no response: {e}" for e in result.transport_errors[:3]])
    nonconforming = sum(result.nonconforming.values())
    figures.add(section, f"{server}: answers that match the schema (status, content type, body)",
                result.requests, result.requests - result.nonconforming_requests, result.nonconforming_requests,
                [f"{name} ({n}): {result.examples[name]}" for name, n in result.nonconforming.items()])
    figures.add(section, f"{server}: workers alive, a real request answered correctly, clean drain, "
                         f"no traceback in the log", 4,
                4 - (not alive) - bool(wrong) - (code != 0) - bool(tracebacks),
                (not alive) + bool(wrong) + (code != 0) + bool(tracebacks),
                ([f"real request: {wrong}"] if wrong else []) + ([f"exit code {code}"] if code else [])
                + tracebacks[:3])
    if auth:  # the operator's token went with every request: answered (401 only where schemathesis' negative
        # mode replaced the header with a malformed one), never 403
        assert result.statuses.get(200) and not result.statuses.get(403), result.statuses
    assert not result.harness_errors, result.harness_errors[:5]
    assert not result.server_errors, result.server_errors[:5]
    assert not result.transport_errors, result.transport_errors[:5]
    assert nonconforming == 0, dict(result.examples)
    assert alive, "a worker died or was replaced"
    assert wrong is None, wrong
    assert not tracebacks, "\n".join(app.lines[-60:])
    assert code == 0, "".join(app.lines[-30:])
