"""The browser's way in: ``GET /login`` (a small page, no CDN), ``POST /login`` (a form with the
token), ``GET``/``POST /logout``.

``POST /login`` with a valid token sets the session cookie (:mod:`.session`) and answers 303 to
``next`` (a local path only: ``/x``, never ``//host`` or ``http://``) or ``/dashboard``; a wrong
token answers the page again, 401, and counts as a failed attempt (429 with ``Retry-After`` past
the limit, :mod:`.ratelimit`); every failure is logged with the client address. The form body is
read up to :data:`MAX_FORM` bytes. ``/logout`` clears the cookie and goes back to ``/login``.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import parse_qs

from starlette.requests import Request  # at module level: FastAPI resolves the annotation by name

from .guard import Guard, client_of
from .session import clear_cookie, set_cookie, sign

log = logging.getLogger("megflow_mp")
MAX_FORM = 4096
DEFAULT_NEXT = "/dashboard"


def local_path(target: str | None) -> str:
    """``target`` when it is a path of this server, else :data:`DEFAULT_NEXT`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ord(c) < 0x20 for c in target):
        return DEFAULT_NEXT
    return target


def page(next_path: str, message: str = "") -> str:
    note = f'<p class="err">{html.escape(message)}</p>' if message else ""
    return PAGE.format(next=html.escape(local_path(next_path), quote=True), note=note)


def add_login_routes(app, guard: Guard) -> None:
    from fastapi.responses import HTMLResponse, RedirectResponse, Response

    @app.get("/login", include_in_schema=False)
    async def login_page(next: str = DEFAULT_NEXT):
        return HTMLResponse(page(next), headers={"Cache-Control": "no-store"})

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        address = client_of(request.scope)
        retry = guard.limiter.blocked(address)
        if retry is not None:
            log.warning("auth: refused 429 login from %s (too many failed attempts)", address)
            return HTMLResponse(page(DEFAULT_NEXT, f"Too many failed attempts: retry in {retry} s."), status_code=429,
                                headers={"Retry-After": str(retry)})
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                return Response("form too large", status_code=413, media_type="text/plain")
        form = parse_qs(body.decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        target = local_path((form.get("next") or [DEFAULT_NEXT])[0])
        identity = await guard.identify(token) if token else None
        if identity is None:
            guard.limiter.fail(address)
            log.warning("auth: failed login from %s", address)
            return HTMLResponse(page(target, "That token is not valid."), status_code=401,
                                headers={"Cache-Control": "no-store"})
        log.info("auth: %s (%s) logged in from %s", identity.name, identity.role, address)
        reply = RedirectResponse(target, status_code=303)
        reply.headers.append("set-cookie", set_cookie(sign(guard.verifier.session_key, identity.name, identity.id),
                                                      guard.secure))
        return reply

    @app.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
    async def logout():
        reply = RedirectResponse("/login", status_code=303)
        reply.headers.append("set-cookie", clear_cookie(guard.secure))
        return reply


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>megflow-mp: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px sans-serif;margin:4em auto;max-width:26em}} input{{font:inherit;width:100%;
box-sizing:border-box;padding:.4em;margin:.4em 0}} .err{{color:#b00}}</style></head>
<body><h1>megflow-mp</h1>{note}
<form method="post" action="/login">
<label for="token">Token (<code>megflow-mp token add NAME --role viewer --file tokens.toml</code>)</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="{next}">
<input type="submit" value="Log in">
</form></body></html>
"""
