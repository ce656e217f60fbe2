"""What the HTTP server nodes share: body reading with a size limit, error replies, their schema."""

from __future__ import annotations

ERROR_SCHEMA = {"type": "object", "properties": {"detail": {"type": "string"}}}
ERRORS = {
    400: {"description": "the body is empty or not what the server takes",
          "content": {"application/json": {"schema": ERROR_SCHEMA,
                                            "example": {"detail": "the body (12 bytes) is not a decodable image"}}}},
    413: {"description": "the body is larger than the server's max_body (ImageServer: or the image has more "
                         "pixels than its max_pixels)",
          "content": {"application/json": {"schema": ERROR_SCHEMA}}},
    500: {"description": "a node raised on this request (on_error = \"reply\"), or the result is not what "
                         "the server replies",
          "content": {"application/json": {"schema": ERROR_SCHEMA,
                                            "example": {"detail": "node 'serve/work' failed: ValueError: bad input"}}}},
    503: {"description": "the server is serving max_pending requests already: retry after the seconds in "
                         "the Retry-After header",
          "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
          "content": {"application/json": {"schema": ERROR_SCHEMA}}},
    504: {"description": "the graph gave no result within the server's timeout",
          "content": {"application/json": {"schema": ERROR_SCHEMA}}},
}


def make_app(title: str, description: str):
    """A FastAPI app whose Swagger UI (``/docs``) is served from the installed swagger-ui-bundle,
    not a CDN, so it works on machines without internet. Its bundle (Swagger UI 4) reads OpenAPI
    3.0, so the schema is declared as 3.0.3.

    Every such app serves ``/metrics`` and ``/dashboard`` (:mod:`megflow_mp.observe`) and the
    health probes ``GET /healthz`` and ``GET /readyz`` (:mod:`megflow_mp.health`: 200
    ``{"ready": true, "workers": N}`` when every worker of the app is up with its models loaded
    and the app has started, else 503 ``{"ready": false, "reasons": [...]}``).

    Ready checks: a node adds a condition of its own to ``/readyz`` with
    ``app.state.ready_checks.append(fn)``, ``fn() -> list[str]``: the reasons it is not ready, one
    line each (empty: ready), e.g. ``lambda: [f"stream {u} has not started" for u in waiting]``.
    Each ``/readyz`` calls every check on a thread of the server (not the hub, not the event
    loop): a check returns at once and only reads state. A check that raises makes the app not
    ready, naming it and its exception. The front door that serves the app adds its own first
    (not ready while it stops)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app = FastAPI(title=title, description=description, docs_url=None, redoc_url=None)
    app.openapi_version = "3.0.3"
    app.mount("/_swagger", StaticFiles(directory=swagger_ui_path), name="swagger")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} - Swagger UI",
                                   swagger_js_url="/_swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/_swagger/swagger-ui.css",
                                   swagger_favicon_url="/_swagger/favicon-32x32.png")

    from .. import health
    from ..observe import instrument

    instrument(app)  # request metrics; /metrics and /dashboard (megflow_mp.observe)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.state.ready_checks = []
    health.add_routes(app, lambda: health.APP.report)  # /healthz, /readyz
    return app


async def _invalid_request(request, exc):
    """422 for a request that does not match its route's schema: where and what, as FastAPI says it,
    but never the input itself (a camera URL in a body may hold a password)."""
    from fastapi.responses import JSONResponse

    errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


def reply_error(status: int, detail: str, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def read_body(request, limit: int):
    """The request's payload: the raw body, or the first file of a multipart form. Returns bytes,
    or an error response (400 empty or bad form, 413 too big) that the route returns as is."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return reply_error(413, f"body of {declared} bytes is larger than the limit of {limit} bytes")
    from starlette.requests import ClientDisconnect

    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return reply_error(413, f"body is larger than the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # the client hung up mid-body: nobody reads this answer, nothing to log
        return reply_error(400, "the client closed the connection before the body was complete")
    body = b"".join(chunks)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        body = await _form_file(request, body)
        if not isinstance(body, bytes):
            return body
    if not body:
        return reply_error(400, "empty body: send the data as the body or as a multipart file")
    return body


async def _form_file(request, body: bytes):
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form()
    for value in form.values():
        if isinstance(value, UploadFile):
            return await value.read()
    return reply_error(400, "multipart form without a file field")
