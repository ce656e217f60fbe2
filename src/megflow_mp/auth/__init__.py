"""Auth for the front doors and ``--metrics-port``: tokens, roles, browser sessions, rate limits.

One module per part:

* :mod:`.tokens`: the tokens file (``megflow-mp token add/list/revoke``): salted scrypt hashes;
* :mod:`.verify`: a server's view of that file, re-read when it changes, with a cache of verified
  tokens (only an unknown token pays the KDF);
* :mod:`.guard`: the one middleware that decides every request (roles by method: ``GET``/``HEAD``
  viewer, the rest operator; ``/healthz``, ``/readyz`` open), with the audit lines;
* :mod:`.session` and :mod:`.login`: the browser's cookie and ``/login``;
* :mod:`.ratelimit`: failed attempts per client address (429);
* :mod:`.openapi`: the bearer scheme in the OpenAPI document;
* :mod:`.policy`: which servers must have auth (not loopback), TLS files.

Where the tokens come from: ``[auth] tokens = "tokens.toml"`` in the config (relative to it) or
``megflow-mp run --auth-tokens FILE`` set :attr:`~megflow_mp.graph.App.auth`, which the workers
inherit with the App; every front door of the app is protected (:func:`protect`, called by
:meth:`~megflow_mp.frontdoor.FrontDoor.start` for the node's app), and ``--metrics-port`` with
``--metrics-auth``.
"""

from __future__ import annotations

from .guard import AuthMiddleware, Guard, needed_role
from .policy import check_exposed, exposure_problems, is_loopback, tls_context


def protect(app, guard: Guard) -> None:
    """Put ``guard`` in front of every route of the FastAPI ``app`` (before it serves its first
    request), add ``/login`` and ``/logout``, and declare the bearer scheme in its OpenAPI document."""
    from .login import add_login_routes
    from .openapi import secure_openapi

    from starlette.middleware import Middleware

    add_login_routes(app, guard)
    # innermost of the app's middleware (after the request metrics, which so count the refusals), before routing
    app.user_middleware.append(Middleware(AuthMiddleware, guard=guard))
    secure_openapi(app)


__all__ = ["AuthMiddleware", "Guard", "check_exposed", "exposure_problems", "is_loopback", "needed_role", "protect",
           "tls_context"]
