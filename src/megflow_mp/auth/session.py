"""Browser sessions: a signed, expiring cookie that names a token's entry, never the token.

The value is ``base64url(JSON {"n": name, "i": token id, "e": expiry}) "." base64url(HMAC-SHA256)``,
signed with the tokens file's ``session_key`` (every front door of the app and ``--metrics-port``
accept each other's cookies) or, when the file has none, a key of this process. A cookie is valid
until its expiry (:data:`LIFETIME`, 12 h) and while its name still has that token id in the file:
revoking the token ends its sessions. The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/``
and ``Secure`` on HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

COOKIE = "megflow_session"
LIFETIME = 12 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sign(key: bytes, name: str, kid: str, lifetime: float = LIFETIME, now: float | None = None) -> str:
    payload = _b64(json.dumps({"n": name, "i": kid, "e": int((now or time.time()) + lifetime)},
                              separators=(",", ":")).encode())
    return f"{payload}.{_b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())}"


def unsign(key: bytes, value: str, now: float | None = None) -> tuple[str, str] | None | bool:
    """``(name, token id)`` of a valid cookie; ``False`` when the signature is wrong (forged: counts as
    a failed attempt); ``None`` when it is well signed but expired."""
    payload, _, mac = value.partition(".")
    want = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(want, mac):
        return False
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        name, kid, expiry = str(data["n"]), str(data["i"]), float(data["e"])
    except (ValueError, KeyError, TypeError):
        return False
    return (name, kid) if expiry > (now or time.time()) else None


def set_cookie(value: str, secure: bool, lifetime: float = LIFETIME) -> str:
    """The ``Set-Cookie`` header value of a session."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={value}; Max-Age={int(lifetime)}; Path=/; HttpOnly; SameSite=Strict{flags}"


def clear_cookie(secure: bool) -> str:
    flags = "; Secure" if secure else ""
    return f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{flags}"


def read_cookie(header: str) -> str | None:
    """The session cookie's value in a ``Cookie`` header, or None."""
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None
