"""The OpenAPI document of a protected server: an HTTP bearer security scheme applied to every
operation (Swagger UI's "Authorize" button), except the open ones (``/healthz``, ``/readyz``:
``security: []``), and the answers of :mod:`.guard` (401, 403, 429) documented on each protected
operation, so clients and schema checkers expect them.
"""

from __future__ import annotations

from .guard import OPEN, needed_role

SCHEME = "bearerAuth"
_ERROR = {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}
ANSWERS = {
    "401": {"description": "no valid token: send 'Authorization: Bearer TOKEN'", "content": _ERROR,
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
    "403": {"description": "the token's role may not do this (viewer: GET only)", "content": _ERROR},
    "429": {"description": "too many failed attempts from this address", "content": _ERROR,
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}},
}


def secure_openapi(app) -> None:
    """Make ``app.openapi()`` (FastAPI) declare the scheme as above."""
    plain = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = plain()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
                "type": "http", "scheme": "bearer",
                "description": "a token of `megflow-mp token add NAME --role viewer|operator --file tokens.toml`"}
            schema["security"] = [{SCHEME: []}]
            for path, ops in schema.get("paths", {}).items():
                for method, op in ops.items():
                    if not isinstance(op, dict):
                        continue
                    if path in OPEN:
                        op["security"] = []
                        continue
                    answers = op.setdefault("responses", {})
                    for code, answer in ANSWERS.items():
                        if code == "403" and needed_role(method) == "viewer":
                            continue  # every role may GET
                        answers.setdefault(code, answer)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
