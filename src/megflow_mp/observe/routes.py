"""The HTTP routes of metrics and the dashboard, on every front door and on ``--metrics-port``.

``GET /metrics``: the Prometheus text exposition of the whole run (every process, see
:mod:`.collect`). ``GET /dashboard``: the live page (plain HTML, CSS and JS from
:file:`assets/`, served here: no CDN, no build step). ``GET /dashboard/graph.svg``: the graph
picture the page colours. ``GET /dashboard/state``: the live state as JSON
(:class:`.dashboard.Tracker`, one per run and process, shared by every page).
``GET /dashboard/events``: the same state as Server-Sent Events, one event per ``interval``; each
response ends after :data:`EVENTS_SPAN` seconds and the browser's EventSource reconnects at once,
so an open page never holds a stopping server for longer than that.

``view()`` gives ``(run directory, app)`` of the run, or None when metrics are off (then every
route answers 404 saying so).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Callable

from starlette.requests import Request  # at module level: FastAPI resolves the annotation by name

ASSETS = Path(__file__).with_name("assets")
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css"}
EVENTS_SPAN = 5.0
OFF = "metrics are off (megflow-mp run --no-metrics, or MEGFLOW_MP_METRICS=0)"


def add_routes(app, view: Callable[[], tuple | None]) -> None:
    from fastapi import Response
    from fastapi.responses import HTMLResponse, StreamingResponse

    from .collect import exposition
    from .dashboard import graph_svg, tracker_of
    from .settings import SETTINGS

    def off():
        return Response(OFF, status_code=404, media_type="text/plain")

    off_doc = {404: {"description": "metrics are off", "content": {"text/plain": {}}}}

    @app.get("/metrics", summary="Prometheus metrics of the whole app", include_in_schema=True,
             responses={200: {"content": {"text/plain": {}}}, **off_doc})
    async def metrics():
        v = view()
        if v is None:
            return off()
        body, ctype = await asyncio.get_running_loop().run_in_executor(None, exposition, v[0])
        return Response(body, media_type=ctype)

    @app.get("/dashboard", summary="Live dashboard: the graph with its rates, and the streams",
             response_class=HTMLResponse, responses=off_doc)
    async def dashboard():
        if view() is None:
            return off()
        return HTMLResponse((ASSETS / "dashboard.html").read_text())

    @app.get("/dashboard/graph.svg", include_in_schema=False)
    async def graph():
        v = view()
        if v is None:
            return off()
        try:
            svg = await asyncio.get_running_loop().run_in_executor(None, graph_svg, v[1])
        except RuntimeError as exc:
            return Response(str(exc), status_code=503, media_type="text/plain")
        return Response(svg, media_type="image/svg+xml")

    @app.get("/dashboard/state", summary="The dashboard's live state (JSON)", responses=off_doc)
    async def state():
        v = view()
        if v is None:
            return off()
        return await asyncio.get_running_loop().run_in_executor(None, tracker_of(*v).state)

    @app.get("/dashboard/events", include_in_schema=False)
    async def events(request: Request):
        v = view()
        if v is None:
            return off()
        tracker = tracker_of(*v)
        loop = asyncio.get_running_loop()

        async def stream():
            yield "retry: 200\n\n"
            deadline = loop.time() + EVENTS_SPAN
            while loop.time() < deadline and not await request.is_disconnected():
                data = await loop.run_in_executor(None, tracker.state)
                yield f"data: {json.dumps(data, separators=(',', ':'))}\n\n"
                await asyncio.sleep(min(SETTINGS.interval, max(0.0, deadline - loop.time())))

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get("/dashboard/_assets/{name}", include_in_schema=False)
    async def asset(name: str):
        path = ASSETS / name
        if "/" in name or path.suffix not in ASSET_TYPES or not path.is_file():
            return Response(f"no asset {name}", status_code=404, media_type="text/plain")
        return Response(path.read_bytes(), media_type=ASSET_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})
