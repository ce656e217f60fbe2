"""megflow_mp.auth without a server: the tokens file and its hashes, the verifier's cache and
re-reads, session cookies, the rate limiter, the role of each method and the exposure rules."""

from __future__ import annotations

import os
import stat
import time

import pytest

from megflow_mp.auth import guard, policy, session, tokens
from megflow_mp.auth.login import local_path
from megflow_mp.auth.ratelimit import RateLimiter
from megflow_mp.auth.verify import Verifier
from megflow_mp.errors import AuthError, FrontDoorError


def test_a_hash_is_salted_carries_its_parameters_and_matches_only_its_token():
    kid, token = tokens.new_token()
    assert token.startswith(kid + ".") and len(token) > 40
    one, two = tokens.hash_token(token), tokens.hash_token(token)
    assert one != two and one.startswith("scrypt$16384$8$1$") and token not in one
    entry = tokens.TokenEntry("a", kid, "viewer", "", one)
    assert entry.matches(token) and not entry.matches(token + "x") and not entry.matches(kid + ".nope")
    assert not tokens.TokenEntry("a", kid, "viewer", "", "md5$x").matches(token)


def test_the_file_is_0600_holds_no_token_and_lists_revokes(tmp_path):
    path = tmp_path / "t.toml"
    alice = tokens.add_token(path, "alice", "operator")
    bob = tokens.add_token(path, "bob.ci", "viewer")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert alice not in text and bob not in text and alice.split(".")[1] not in text
    got = tokens.read_tokens(path)
    assert {n: e.role for n, e in got.entries.items()} == {"alice": "operator", "bob.ci": "viewer"}
    assert got.session_key and len(got.session_key) == 32
    with pytest.raises(AuthError, match="already"):
        tokens.add_token(path, "alice", "viewer")
    for name, role in (("a b", "viewer"), ("", "viewer"), ("x" * 65, "viewer"), ("c", "admin")):
        with pytest.raises(AuthError):
            tokens.add_token(path, name, role)
    tokens.revoke_token(path, "alice")
    assert list(tokens.read_tokens(path).entries) == ["bob.ci"]
    with pytest.raises(AuthError, match="no token named"):
        tokens.revoke_token(path, "alice")
    with pytest.raises(AuthError, match="not found"):
        tokens.read_tokens(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text('[tokens.x]\nrole = "root"\nid = "1"\nhash = "h"\n')
    with pytest.raises(AuthError, match="role"):
        tokens.read_tokens(tmp_path / "bad.toml")


def test_the_cache_spares_the_kdf_and_a_revocation_is_seen_at_the_next_request(tmp_path):
    path = tmp_path / "t.toml"
    token = tokens.add_token(path, "alice", "operator")
    v = Verifier(path)
    assert v.cached(token) is None
    t0 = time.perf_counter()
    assert v.verify(token).name == "alice"
    kdf = time.perf_counter() - t0
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        assert v.cached(token).role == "operator"
    cached = (time.perf_counter() - t0) / n
    print(f"\nfirst check (scrypt) {kdf * 1e3:.1f} ms, cached check {cached * 1e6:.1f} us")
    assert cached * 50 < kdf
    assert v.verify("nope.nope") is None and v.verify(token.split(".")[0] + ".wrong") is None
    assert token.encode() not in b"".join(v.cache)  # keyed digests, never the token
    tokens.revoke_token(path, "alice")
    assert v.cached(token) is None and v.verify(token) is None  # the file changed: re-read, cache emptied
    again = tokens.add_token(path, "alice", "viewer")
    assert v.verify(token) is None and v.verify(again).role == "viewer"
    path.write_text("not toml [")
    assert v.verify(again) is None  # a broken file refuses everything
    path.unlink()
    assert v.verify(again) is None


def test_a_session_cookie_is_signed_expires_and_names_no_token():
    key = os.urandom(32)
    value = session.sign(key, "alice", "abcd1234", lifetime=60, now=1000)
    assert session.unsign(key, value, now=1010) == ("alice", "abcd1234")
    assert session.unsign(key, value, now=1061) is None  # expired
    assert session.unsign(os.urandom(32), value, now=1010) is False  # another key
    payload, mac = value.split(".")
    forged = session.sign(os.urandom(32), "root", "abcd1234", now=1000).split(".")[0] + "." + mac
    assert session.unsign(key, forged, now=1010) is False
    header = session.set_cookie(value, secure=True)
    assert all(f in header for f in ("HttpOnly", "SameSite=Strict", "Secure", "Max-Age=43200", "Path=/"))
    assert "Secure" not in session.set_cookie(value, secure=False)
    assert session.read_cookie(f"a=1; {session.COOKIE}={value}; b=2") == value


def test_a_revoked_token_ends_its_sessions(tmp_path):
    path = tmp_path / "t.toml"
    token = tokens.add_token(path, "alice", "viewer")
    g = guard.Guard(path)
    identity = g.verifier.verify(token)
    cookie = session.sign(g.verifier.session_key, identity.name, identity.id)
    assert g.session(cookie).name == "alice"
    assert g.verifier.session_key == tokens.read_tokens(path).session_key  # every server of the app: one key
    tokens.revoke_token(path, "alice")
    assert g.session(cookie) is None
    assert g.session(cookie[:-2] + "xx") is False


def test_the_rate_limiter_blocks_after_the_limit_and_forgets_with_the_window():
    now = [0.0]
    r = RateLimiter(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert r.blocked("10.0.0.1") is None
        r.fail("10.0.0.1")
        now[0] += 1
    assert r.blocked("10.0.0.1") == 57 and r.blocked("10.0.0.2") is None
    now[0] = 60.5
    assert r.blocked("10.0.0.1") is None  # the first failure is a minute old


def test_roles_by_method_and_only_health_and_login_are_open():
    assert guard.needed_role("GET") == guard.needed_role("HEAD") == "viewer"
    assert all(guard.needed_role(m) == "operator" for m in ("POST", "DELETE", "PUT", "PATCH", "OPTIONS"))
    assert guard.OPEN == {"/healthz", "/readyz", "/login", "/logout"}


@pytest.mark.parametrize("target,expected", [("/view/0", "/view/0"), ("/docs?x=1", "/docs?x=1"),
                                             ("//evil.example", "/dashboard"), ("https://evil", "/dashboard"),
                                             ("/\\evil", "/dashboard"), ("", "/dashboard"), (None, "/dashboard")])
def test_login_goes_back_to_local_paths_only(target, expected):
    assert local_path(target) == expected


def test_loopback_hosts_and_the_exposure_rule(caplog):
    assert all(policy.is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(policy.is_loopback(h) for h in ("0.0.0.0", "::", "10.1.2.3", "example.com"))
    policy.check_exposed("s", "127.0.0.1", False, None)
    policy.check_exposed("s", "0.0.0.0", False, "tokens.toml")
    with pytest.raises(AuthError) as exc:
        policy.check_exposed("server 's'", "0.0.0.0", False, None)
    assert "\n" not in str(exc.value) and "megflow-mp token add" in str(exc.value) and "insecure = true" in str(exc.value)
    policy.check_exposed("server 's'", "0.0.0.0", True, None)
    assert "without auth (insecure = true)" in caplog.text


def test_tls_files_are_checked_when_the_server_is_built(tmp_path):
    assert policy.tls_context("server 'x'", None, None) is None
    with pytest.raises(FrontDoorError, match="server 'x'.*both"):
        policy.tls_context("server 'x'", "cert.pem", None)
    with pytest.raises(FrontDoorError, match="server 'x': cannot load TLS certificate"):
        policy.tls_context("server 'x'", tmp_path / "missing.pem", tmp_path / "missing.key")
