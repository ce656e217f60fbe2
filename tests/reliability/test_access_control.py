"""Auth end to end (the reliability suite: the route x role matrix is a row of RELIABILITY.md): real apps (supervisor + workers) with ``[auth]``, requests from real clients.

Every route of each server's own /openapi.json (ImageServer, BytesServer, VideoServer, and
``--metrics-port`` with ``--metrics-auth``) x {no token, bad token, viewer, operator}; the routes
outside the document (Swagger UI, assets); the limit on failed attempts (429 + Retry-After);
revocation without a restart; the audit lines; a server on 0.0.0.0 refused without auth and
warned with ``insecure = true``; TLS verified against a CA made here; ``token add``'s output.
"""

from __future__ import annotations

import itertools
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse

import pytest

from tests.integration.auth_apps import AuthApp, make_tokens, operations, request, wait_until
from tests.reliability.servers import cli_env, free_port, write_app

SECTION = "Access control and secrets (tokens and roles on every front door; camera URLs with secrets)"
SOURCES = (f"127.0.{i}.{j}" for i, j in itertools.product(range(1, 250), range(2, 250)))
FILL = {"extra_data": "x", "url": urllib.parse.quote("/nonexistent/clip.mp4", safe=""), "sid": "0"}
OUTSIDE = {"all": ["/docs", "/_swagger/swagger-ui.css", "/dashboard/graph.svg", "/dashboard/_assets/dashboard.js"],
           "VideoServer": ["/view/_assets/player.js"]}


def filled(path: str) -> str:
    for key, value in FILL.items():
        path = path.replace(f"{{{key}}}", value)
    assert "{" not in path, f"no plausible value for a parameter of {path}: add it to FILL"
    return path


def body_of(method: str, path: str) -> tuple[bytes | None, dict]:
    if method in ("GET", "HEAD", "DELETE"):
        return None, {}
    if path == "/streams":
        return json.dumps({"url": "/nonexistent/clip.mp4"}).encode(), {"Content-Type": "application/json"}
    return b"not an image", {"Content-Type": "application/octet-stream"}


def streams(op: dict) -> bool:
    """The operation answers an endless stream (Server-Sent Events)."""
    return any("text/event-stream" in r.get("content", {}) for r in op.get("responses", {}).values())


def check_matrix(port: int, tokens: dict, outside: list[str]) -> dict:
    """Every operation x every credential; returns {(method, path): {who: status}} (asserting as it goes)."""
    seen = {}
    ops = operations(port, tokens["viewer"])
    assert ops, "no operation in /openapi.json"
    for method, template, op in ops:
        path = filled(template)
        body, headers = body_of(method, path)
        got = {}
        for who, token in (("none", None), ("bad", tokens["viewer"][:-4] + "AAAA"), ("viewer", tokens["viewer"]),
                           ("operator", tokens["operator"])):
            status, hdrs, _ = request(port, method, path, token, body, headers, source=next(SOURCES),
                                      read=not streams(op))  # an event stream never ends: not read
            got[who] = status
            if template in ("/healthz", "/readyz"):
                assert status in (200, 503), (method, template, who, status)
                continue
            if who in ("none", "bad"):
                assert status == 401 and hdrs.get("www-authenticate", "").startswith("Bearer"), (template, who, status)
            elif who == "viewer" and method not in ("GET", "HEAD"):
                assert status == 403, (method, template, status)
            else:
                assert status not in (401, 403), (method, template, who, status)
            if status in (401, 403):
                assert op.get("responses", {}).get(str(status)), f"{method} {template} does not document {status}"
        seen[(method, template)] = got
    for path in outside:
        assert request(port, "GET", path, source=next(SOURCES))[0] == 401, path
        assert request(port, "GET", path, tokens["viewer"], source=next(SOURCES))[0] == 200, path
    return seen


@pytest.mark.parametrize("server", ["ImageServer", "BytesServer", "VideoServer", "metrics"])
def test_every_route_takes_the_right_role(server, tmp_path, figures):
    path, tokens = make_tokens(tmp_path)
    extra, kind = (), server
    if server == "metrics":
        mport = free_port()
        extra, kind = ("--metrics-port", mport, "--metrics-auth"), "BytesServer"
    args = {"timeout": 10}
    if kind == "VideoServer":
        args["allow_dirs"] = [str(tmp_path)]
    app = AuthApp.start_with(tmp_path, kind, path, extra_cli=extra, **args)
    try:
        port = mport if server == "metrics" else app.port
        outside = [] if server == "metrics" else OUTSIDE["all"] + OUTSIDE.get(server, [])
        if server == "metrics":
            outside = ["/dashboard/graph.svg", "/dashboard/_assets/dashboard.js"]
        seen = check_matrix(port, tokens, outside)
        doc = json.loads(request(port, "GET", "/openapi.json", tokens["viewer"])[2])
        assert doc["components"]["securitySchemes"]["bearerAuth"] == {
            "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearerAuth"][
                "description"]}
        assert doc["security"] == [{"bearerAuth": []}]
        assert doc["paths"]["/healthz"]["get"]["security"] == [] and doc["paths"]["/readyz"]["get"]["security"] == []
        if server == "VideoServer":
            assert {("POST", "/start/{url}"), ("POST", "/stop/{sid}"), ("DELETE", "/streams/{sid}"),
                    ("GET", "/view/{sid}/live.mp4")} <= set(seen)
    finally:
        code = app.stop()
    log = "".join(app.lines)
    assert code == 0, log[-3000:]
    assert tokens["viewer"] not in log and tokens["operator"] not in log
    tried = 4 * len(seen) + 2 * len(outside)
    figures.add(SECTION, f"{server}: every route of its /openapi.json ({len(seen)}) x no token, bad token, viewer, "
                "operator, and the pages outside the document x no token, viewer: 401 / 403 / allowed as the role "
                "says; the tokens in no log line", tried, tried, 0,
                [f"{server}: {len(seen)} operations, {len(outside)} pages outside the document; statuses "
                 f"{sorted({c for got in seen.values() for c in got.values()})}"])
    assert "auth: refused 401 a bad token from 127." in log
    if server == "metrics":  # GET routes only: no 403 to give
        assert "/dashboard (auth: tokens of" in log
    else:
        assert "auth: refused 403 the-viewer (viewer) from" in log
    if server == "VideoServer":  # the audit of the operator's requests: name, address, route template
        assert "auth: the-operator (operator) from 127." in log and "POST /start/{url:anypath} -> 400" in log
        assert "DELETE /streams/{sid} -> 404" in log and "/nonexistent" not in log


def test_failed_attempts_are_limited_revocation_works_at_once_and_login_sets_a_cookie(tmp_path):
    path, tokens = make_tokens(tmp_path)
    app = AuthApp.start_with(tmp_path, "BytesServer", path, timeout=10)
    try:
        port, bad = app.port, "deadbeef.not-a-token"
        assert request(port, "GET", "/metrics", tokens["viewer"], source="127.0.0.5")[0] == 200  # now cached
        for _ in range(10):
            assert request(port, "GET", "/metrics", bad, source="127.0.0.5")[0] == 401
        status, headers, body = request(port, "GET", "/metrics", bad, source="127.0.0.5")
        assert status == 429 and 1 <= int(headers["retry-after"]) <= 60, body
        assert request(port, "GET", "/metrics", tokens["operator"], source="127.0.0.5")[0] == 429  # not verified
        assert request(port, "GET", "/metrics", tokens["viewer"], source="127.0.0.5")[0] == 200  # known good
        assert request(port, "GET", "/metrics", tokens["operator"], source="127.0.0.6")[0] == 200  # another address
        form = urllib.parse.urlencode({"token": bad, "next": "/docs"}).encode()
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        assert request(port, "POST", "/login", body=form, headers=form_type, source="127.0.0.5")[0] == 429

        # the cost of auth per request: a cached token against no token at all (health probe, open)
        def timed(token, route, n=200, expect=200):
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            hdrs = {"Authorization": f"Bearer {token}"} if token else {}
            t0 = time.perf_counter()
            for _ in range(n):
                conn.request("GET", route, headers=hdrs)
                reply = conn.getresponse()
                reply.read()
                assert reply.status == expect
            conn.close()
            return (time.perf_counter() - t0) / n

        open_s = min(timed(None, "/healthz") for _ in range(3))  # open: the guard lets it through untouched
        auth_s = min(timed(tokens["viewer"], "/no-such-route", expect=404) for _ in range(3))  # checked, then 404
        print(f"\nper request, keep-alive: open /healthz {open_s * 1e6:.0f} us, a cached token's check + 404 "
              f"{auth_s * 1e6:.0f} us")

        # login: a bad token is the page again (401), a good one a cookie and a redirect to next
        status, _, page = request(port, "POST", "/login", body=urllib.parse.urlencode(
            {"token": bad, "next": "/docs"}).encode(), headers=form_type, source="127.0.0.7")
        assert status == 401 and b"not valid" in page
        status, headers, _ = request(port, "POST", "/login", body=urllib.parse.urlencode(
            {"token": tokens["viewer"], "next": "//evil.example/x"}).encode(), headers=form_type, source="127.0.0.7")
        assert status == 303 and headers["location"] == "/dashboard"
        status, headers, _ = request(port, "POST", "/login", body=urllib.parse.urlencode(
            {"token": tokens["viewer"], "next": "/docs"}).encode(), headers=form_type, source="127.0.0.7")
        cookie = headers["set-cookie"]
        assert status == 303 and headers["location"] == "/docs"
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=43200" in cookie
        session = cookie.split(";")[0]
        assert tokens["viewer"] not in session
        assert request(port, "GET", "/docs", headers={"Cookie": session}, source="127.0.0.7")[0] == 200
        assert request(port, "POST", "/analyze/x", body=b"x", headers={"Cookie": session})[0] == 403  # a viewer
        status, headers, _ = request(port, "GET", "/dashboard", headers={"Accept": "text/html"})
        assert status == 303 and headers["location"] == "/login?next=%2Fdashboard"
        assert request(port, "GET", "/dashboard", headers={"Accept": "application/json"})[0] == 401

        # revocation: the next request of that token, and of its sessions, is refused
        subprocess.run([sys.executable, "-m", "megflow_mp.cli", "token", "revoke", "the-viewer", "--file", str(path)],
                       check=True, env=cli_env(), capture_output=True)
        assert request(port, "GET", "/metrics", tokens["viewer"], source="127.0.0.8")[0] == 401
        assert request(port, "GET", "/docs", headers={"Cookie": session}, source="127.0.0.8")[0] == 401
        assert request(port, "GET", "/metrics", tokens["operator"], source="127.0.0.8")[0] == 200
    finally:
        code = app.stop()
    log = "".join(app.lines)
    assert code == 0
    assert auth_s < open_s + 0.002, (open_s, auth_s)  # the cached check adds well under 2 ms
    assert "auth: refused 429 from 127.0.0.5" in log and log.count("refused 429 from 127.0.0.5") == 1
    assert "auth: failed login from 127.0.0.7" in log and "the-viewer (viewer) logged in from 127.0.0.7" in log
    assert tokens["viewer"] not in log and tokens["operator"] not in log and bad not in log


def test_token_add_prints_the_token_last_and_stores_only_its_hash(tmp_path):
    path = tmp_path / "tokens.toml"
    cmd = [sys.executable, "-m", "megflow_mp.cli", "token"]
    out = subprocess.run([*cmd, "add", "ci", "--role", "operator", "--file", str(path)], capture_output=True,
                         text=True, env=cli_env(), check=True).stdout
    token = out.strip().splitlines()[-1]
    assert len(token) > 40 and out.endswith(token + "\n") and out.count(token) == 1
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert token not in text and token.split(".", 1)[1] not in text and "scrypt$" in text
    listed = subprocess.run([*cmd, "list", "--file", str(path)], capture_output=True, text=True, env=cli_env(),
                            check=True).stdout
    assert listed.startswith("ci\toperator\t") and "scrypt" not in listed
    again = subprocess.run([*cmd, "add", "ci", "--role", "viewer", "--file", str(path)], capture_output=True,
                           text=True, env=cli_env())
    assert again.returncode == 1 and "already" in again.stderr


def _run(args, cwd, timeout=60):
    return subprocess.run([sys.executable, "-m", "megflow_mp.cli", *map(str, args)], capture_output=True, text=True,
                          env=cli_env(), cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("server", ["ImageServer", "VideoServer"])
def test_a_server_on_all_interfaces_needs_auth_or_insecure(server, tmp_path):
    pkg = write_app(tmp_path, server, free_port(), host="0.0.0.0")
    refused = _run(["run", "-p", pkg], tmp_path)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1, refused.stderr
    assert "listens on 0.0.0.0" in lines[0] and "megflow-mp token add" in lines[0] and "insecure = true" in lines[0]
    assert "[auth]" in lines[0] and "serve/source" in lines[0]
    assert _run(["check", "-p", pkg], tmp_path).returncode == 1  # check says it too

    app = AuthApp(write_app(tmp_path / "open", server, port := free_port(), host="0.0.0.0", insecure=True), port,
                  tmp_path)
    try:
        assert request(port, "GET", "/healthz")[0] == 200
        assert request(port, "GET", "/openapi.json")[0] == 200  # open, as asked
    finally:
        assert app.stop() == 0
    assert "serves 0.0.0.0 without auth (insecure = true)" in "".join(app.lines)

    path, tokens = make_tokens(tmp_path)
    app = AuthApp(write_app(tmp_path / "tok", server, port := free_port(), host="0.0.0.0"), port, tmp_path,
                  extra_cli=["--auth-tokens", path])  # the command line's tokens, no [auth] in the config
    try:
        assert request(port, "GET", "/openapi.json")[0] == 401
        assert request(port, "GET", "/openapi.json", tokens["viewer"])[0] == 200
    finally:
        assert app.stop() == 0


def test_the_config_names_a_missing_tokens_file_and_the_metrics_host_needs_auth(tmp_path):
    pkg = write_app(tmp_path, "BytesServer", free_port())
    toml = pkg / f"{pkg.name}.toml"
    toml.write_text(toml.read_text() + '\n[auth]\ntokens = "nope.toml"\n')
    out = _run(["check", "-p", pkg], tmp_path)
    assert out.returncode == 1 and "auth.tokens: tokens file not found" in out.stderr and "nope.toml" in out.stderr
    toml.write_text(toml.read_text().replace('tokens = "nope.toml"', 'tokens = "x.toml"\nusers = 1'))
    out = _run(["check", "-p", pkg], tmp_path)
    assert out.returncode == 1 and "unknown field 'users'" in out.stderr
    plain = write_app(tmp_path / "plain", "BytesServer", free_port())
    out = _run(["run", "-p", plain, "--metrics-port", free_port(), "--metrics-host", "0.0.0.0"], tmp_path)
    assert out.returncode == 1 and "--metrics-auth" in out.stderr
    out = _run(["run", "-p", plain, "--metrics-port", free_port(), "--metrics-auth"], tmp_path)
    assert out.returncode == 1 and "needs a tokens file" in out.stderr


def make_ca_and_cert(root):
    """A CA and a server certificate for 127.0.0.1 signed by it (cryptography), as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "megflow-mp test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {"ca.pem": ca.public_bytes(serialization.Encoding.PEM),
             "cert.pem": cert.public_bytes(serialization.Encoding.PEM),
             "key.pem": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())}
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root / "ca.pem", root / "cert.pem", root / "key.pem"


def test_tls_is_served_and_verified_against_the_ca_and_a_bad_file_names_the_node(tmp_path):
    ca, cert, key = make_ca_and_cert(tmp_path)
    path, tokens = make_tokens(tmp_path)
    app = AuthApp.start_with(tmp_path, "BytesServer", path, scheme="https", tls_cert=str(cert), tls_key=str(key),
                             timeout=10)
    try:
        context = ssl.create_default_context(cafile=str(ca))
        status, _, body = request(app.port, "POST", "/analyze/x", tokens["operator"], b"abc", context=context)
        assert (status, body) == (200, b"cba")
        assert request(app.port, "GET", "/metrics", context=context)[0] == 401
        with pytest.raises(ssl.SSLCertVerificationError):
            request(app.port, "GET", "/healthz", context=ssl.create_default_context())  # not a trusted CA
        status, headers, _ = request(app.port, "POST", "/login", body=urllib.parse.urlencode(
            {"token": tokens["viewer"]}).encode(), headers={"Content-Type": "application/x-www-form-urlencoded"},
            context=context)
        assert status == 303 and "; Secure" in headers["set-cookie"]
    finally:
        assert app.stop() == 0
    assert f"listening on https://127.0.0.1:{app.port}" in "".join(app.lines)

    pkg = write_app(tmp_path / "bad", "BytesServer", free_port(), tls_cert=str(tmp_path / "missing.pem"),
                    tls_key=str(key))
    out = _run(["run", "-p", pkg], tmp_path)
    assert out.returncode == 1 and "server 'source': cannot load TLS certificate" in out.stderr, out.stderr
