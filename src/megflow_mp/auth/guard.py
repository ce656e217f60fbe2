"""Who may call what: the one middleware in front of every route of a protected server.

Roles are decided here and nowhere else, by method: ``GET`` and ``HEAD`` need ``viewer`` (lists,
messages, live views, the dashboard, ``/metrics``, ``/docs``, ``/openapi.json``), every other method
``operator`` (``/start``, ``/stop``, ``/analyze``, ``POST``/``DELETE /streams``); an operator may do
what a viewer may. Open to all: :data:`OPEN` (``/healthz`` and ``/readyz``, for orchestrators'
probes; ``/login`` and ``/logout``). A route added later is covered without a word: nothing is
open unless listed in :data:`OPEN`.

Credentials: ``Authorization: Bearer TOKEN``, else the session cookie (:mod:`.session`). Answers:
no credentials: 401 JSON with ``WWW-Authenticate: Bearer`` (a browser's ``GET`` of a page,
``Accept: text/html``: 303 to ``/login?next=...``); a bad token or forged cookie: 401 (and counts
as a failed attempt of the client address, :mod:`.ratelimit`); a client over its limit: 429 with
``Retry-After`` (checked before any KDF: only a token already verified gets through); a role
that may not: 403. Audit (logger ``megflow_mp``, ``auth:`` lines): every refusal (401, 403; a
429 once per blocked period of an address) and every operator request except ``/analyze`` (the
data path), naming the token's name and the client address, never the token; paths are logged as
route templates (``/start/{url}``), never raw (a stream URL may carry a password).
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import quote

from .ratelimit import RateLimiter
from .session import COOKIE, clear_cookie, read_cookie, unsign
from .verify import Identity, Verifier

log = logging.getLogger("megflow_mp")
OPEN = frozenset({"/healthz", "/readyz", "/login", "/logout"})
VIEWER_METHODS = frozenset({"GET", "HEAD"})
RANK = {"viewer": 1, "operator": 2}
QUIET_AUDIT = ("/analyze/",)  # operator requests not logged one by one: the data path


def needed_role(method: str) -> str:
    return "viewer" if method.upper() in VIEWER_METHODS else "operator"


class Guard:
    """The auth state of one server: its tokens (:class:`Verifier`), its limiter, whether it is TLS."""

    def __init__(self, tokens_path, secure: bool = False, limiter: RateLimiter | None = None):
        self.verifier = Verifier(tokens_path)
        self.limiter = limiter or RateLimiter()
        self.secure = secure
        self.quiet_until: dict[str, float] = {}  # address -> end of its block, its 429s logged once

    async def identify(self, token: str) -> Identity | None:
        """The identity of ``token`` (a KDF run on a thread when it is not cached), or None."""
        hit = self.verifier.cached(token)
        if hit is not None:
            return hit
        return await asyncio.get_running_loop().run_in_executor(None, self.verifier.verify, token)

    def session(self, value: str):
        """Identity of a session cookie; False: forged; None: expired or its token revoked."""
        self.verifier.fresh()
        got = unsign(self.verifier.session_key, value)
        if not got:
            return got
        return self.verifier.current(*got)


def client_of(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def shown_path(scope) -> str:
    """The route template when routing ran, else the first path segment (a raw path may carry a secret)."""
    route = getattr(scope.get("route"), "path", None)
    if route:
        return route
    parts = scope.get("path", "/").split("/", 2)
    return "/" + parts[1] + ("/..." if len(parts) > 2 else "")


def wants_html(scope) -> bool:
    headers = dict(scope.get("headers") or [])
    return scope.get("method") == "GET" and b"text/html" in headers.get(b"accept", b"")


class AuthMiddleware:
    """Pure ASGI (bodies stream through untouched). ``guard=None``: everything open, as without auth."""

    def __init__(self, app, guard: Guard | None):
        self.app, self.guard = app, guard

    async def __call__(self, scope, receive, send):
        guard = self.guard
        if guard is None or scope["type"] not in ("http", "websocket") or scope.get("path") in OPEN:
            return await self.app(scope, receive, send)
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        address = client_of(scope)
        headers = dict(scope.get("headers") or [])
        token, cookie = _bearer(headers.get(b"authorization", b"")), read_cookie(
            headers.get(b"cookie", b"").decode("latin-1"))
        identity = None
        if token is not None:
            identity = guard.verifier.cached(token)
        if identity is None and (token is not None or cookie is not None):
            retry = guard.limiter.blocked(address)
            if retry is not None:
                return await self._refuse(scope, receive, send, 429, "too many failed attempts from this address; "
                                          f"retry in {retry} s", address, extra={"Retry-After": str(retry)})
            if token is not None:
                identity = await guard.identify(token)
            else:
                identity = guard.session(cookie)
            if identity is False or (identity is None and token is not None):
                guard.limiter.fail(address)
                return await self._refuse(scope, receive, send, 401, "invalid token" if token is not None
                                          else "invalid session cookie", address, error="invalid_token",
                                          why="a bad token" if token is not None else "a forged session cookie")
        if identity is None:  # no credentials, or an expired / revoked session
            if wants_html(scope):
                return await self._to_login(scope, receive, send)
            return await self._refuse(scope, receive, send, 401, "authentication required: send "
                                      "'Authorization: Bearer TOKEN' (or log in at /login)", address,
                                      why="no credentials" if cookie is None else "an expired or revoked session")
        need = needed_role(method)
        if RANK[identity.role] < RANK[need]:
            return await self._refuse(scope, receive, send, 403, f"token {identity.name!r} is a {identity.role}; "
                                      f"{method} needs an {need}", address, who=identity)
        scope.setdefault("state", {})["auth"] = identity
        if need == "viewer" or scope.get("path", "").startswith(QUIET_AUDIT):
            return await self.app(scope, receive, send)
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            log.info("auth: %s (%s) from %s: %s %s -> %d", identity.name, identity.role, address, method,
                     shown_path(scope), status[0])

    async def _refuse(self, scope, receive, send, status, detail, address, extra=None, error=None, who=None,
                      why="no credentials"):
        import time

        guard = self.guard
        if status == 429:
            now = time.monotonic()
            if guard.quiet_until.get(address, 0) < now:
                guard.quiet_until[address] = now + int(extra["Retry-After"])
                log.warning("auth: refused 429 from %s: %s %s (too many failed attempts; further 429s for %s s not "
                            "logged)", address, scope.get("method", "GET"), shown_path(scope), extra["Retry-After"])
        else:
            name = f"{who.name} ({who.role})" if who else why
            log.warning("auth: refused %d %s from %s: %s %s", status, name, address, scope.get("method", "GET"),
                        shown_path(scope))
        headers = dict(extra or {})
        if status == 401:
            headers["WWW-Authenticate"] = f'Bearer realm="megflow-mp", error="{error}"' if error else \
                'Bearer realm="megflow-mp"'
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await _json(send, status, {"detail": detail}, headers)

    async def _to_login(self, scope, receive, send):
        target = scope.get("path", "/")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(b"location", f"/login?next={quote(target, safe='')}".encode()), (b"content-length", b"0"),
                   (b"cache-control", b"no-store")]
        if COOKIE.encode() in dict(scope.get("headers") or []).get(b"cookie", b""):
            headers.append((b"set-cookie", clear_cookie(self.guard.secure).encode()))
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _bearer(value: bytes) -> str | None:
    scheme, _, token = value.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def _json(send, status: int, body: dict, headers: dict) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
           (b"cache-control", b"no-store")]
    raw += [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
