"""The HTTP routes of a VideoServer: MegFlow's, the JSON resource ``/streams``, the live views.

MegFlow's routes answer as MegFlow did: ``POST /start/{url}`` -> ``start stream whose id is N``
(text), ``POST /stop/{id}`` -> ``stop stream N success``, ``GET /list``, ``GET /get_msgs/{id}`` (a
JSON list: string messages as MegFlow gave them, JSON values as themselves).
``?id=NAME`` on ``/start`` names the stream. The JSON resource is for programs:

- ``GET /streams``: every stream (as ``/list``); ``GET /streams/{id}``: one, 404 when unknown;
- ``POST /streams`` with ``{"url": ..., "id": ..., "options": {...}}``: 201 with the stream, 400 a
  refused URL, id or option, 409 an id in use;
- ``DELETE /streams/{id}``: stops it and forgets it (204), 404 when unknown;
- ``GET /streams/{id}/events``, ``GET /events``: the messages live (:mod:`.events_routes`).

Every route that takes an id takes a name too (:func:`~..video.spec.parse_sid`). URLs are shown
redacted (``rtsp://***@host/...``, ``?token=***``: :mod:`..video.redact`), in replies and errors alike.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from ..errors import ReaderError
from ..live.routes import add_view_routes
from .events_routes import add_event_routes
from ..video.redact import scrub
from ..video.spec import StreamId, StreamOptions, StreamSpec, parse_sid
from .http_routes import ERROR_SCHEMA, make_app, reply_error


class StreamInfo(BaseModel):
    """One stream as ``GET /list`` and ``GET /streams`` show it."""

    model_config = {"json_schema_extra": {"examples": [{
        "id": "gate", "url": "rtsp://127.0.0.1:8554/test", "state": "running", "reason": None, "frames": 1250,
        "dropped": 3, "corrupt": 0, "fps": 25.0, "reconnects": 0, "messages_dropped": 0, "restarts": 1,
        "last_error": "node 'subgraph/det' failed: ValueError: bad frame", "latency_p50_ms": 48.0,
        "latency_p95_ms": 95.5, "replica": 0, "declared": True}]}}
    id: StreamId = Field(description="MegFlow's integer id, or the stream's name")
    url: str = Field(description="the stream's URL or file, its secrets shown as *** (user info, password=, "
                     "token=, api_key=, ...)")
    state: str = Field(description="starting, running, reconnecting, restarting, finished, stopped or error")
    reason: str | None = Field(None, description="why it is reconnecting, restarting or failed")
    frames: int = Field(description="frames decoded")
    dropped: int = Field(description="frames dropped because the pipeline was slower than a live source")
    corrupt: int = Field(description="packets the decoder refused and frames it marked corrupt (damaged data, "
                         "missing references): skipped, the stream goes on")
    fps: float = Field(description="decode rate over the last second")
    reconnects: int
    messages_dropped: int = Field(description="oldest messages dropped from get_msgs' queue because it was not "
                                  "called (live consumers of /events are not affected)")
    restarts: int = Field(0, description="times the stream was started again after a node of its graph raised")
    last_error: str | None = Field(None, description="the failure that caused the last restart")
    latency_p50_ms: float | None = Field(None, description="median age of a frame (from its decoding) when its "
                                         "result left the stream's subgraph, over the last 10 s")
    latency_p95_ms: float | None = Field(None, description="95th percentile of the same")
    replica: int = Field(0, description="the VideoServer replica that runs it (cloned = N)")
    machine: str | None = Field(None, description="on a cluster: the machine that decodes it and runs its instance")
    declared: bool = Field(False, description="declared in the config's streams (not recorded in the state file)")


def _json_error(description: str, example: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": ERROR_SCHEMA, "example": {"detail": example}}}}


MESSAGES = {"description": "the messages taken (and cleared): each a string as the stream's graph sent it, or "
            "a JSON value (object, array, number, ...) it sent; what JSON cannot hold is shown with str()",
            "content": {"application/json": {"schema": {"type": "array", "items": {}},
                                              "example": ['{"frame": 12, "boxes": []}',
                                                          {"frame": 13, "boxes": [[10, 20, 50, 80]]}]}}}
NOT_FOUND = {404: _json_error("no stream with this id", "no stream gate")}
REFUSED = _json_error("refused URL, path, id or option, or a file that cannot be decoded",
                      "refused: only rtsp, rtsps, http and https URLs or files are accepted, not ftp://")
IN_USE = _json_error("a running stream has this id", "a stream named 'gate' is running: stop it first or give "
                     "another id")


def build_app(server):
    """The FastAPI app of VideoServer node ``server`` (replica 0)."""
    from fastapi import Body, Query, Response
    from fastapi.responses import JSONResponse
    from starlette.convertors import PathConvertor, register_url_convertor

    from .video_server import StreamRefused

    class AnyPath(PathConvertor):
        regex = "(?s:.*)"  # starlette's path stops at a newline: /start/a%0Ab was 404, not refused

    register_url_convertor("anypath", AnyPath())
    app = make_app(f"megflow-mp VideoServer {server.name}",
                   "Start and stop video streams; each runs in its own subgraph instance. MegFlow's routes "
                   "(/start, /stop, /list, /get_msgs) and a JSON resource (/streams).")
    app.state.ready_checks.append(server.ready_problems)  # /readyz: its kept streams started

    def run(fn, *args):
        return asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def shown(info: dict) -> dict:
        return {**info, "declared": info["id"] in server.declared_ids}

    async def start(url: str, options: StreamOptions, sid):
        """(stream, None) or (None, error response)."""
        try:
            return await run(server.start_stream, url, options, sid), None
        except StreamRefused as exc:
            return None, reply_error(exc.status, scrub(exc.reason, url))
        except ReaderError as exc:
            return None, reply_error(400, f"cannot decode: {scrub(str(exc), url)}")

    @app.post("/start/{url:anypath}", summary="Start a stream",
              responses={200: {"content": {"text/plain": {"example": "start stream whose id is 0"}}},
                         400: REFUSED, 409: IN_USE})
    async def start_megflow(url: str, read_timeout: float | None = Query(
            None, description="this stream's read timeout in seconds, 0.001 <= S <= 3600 (default: the node's "
            "read_timeout): a live source that sends nothing for this long is reconnected"),
            id: str | None = Query(None, description="the stream's name: 1 to 64 letters, digits, '_', '.', '-' "
                                   "(default: the next integer id)", examples=["gate"])):
        if read_timeout is not None and not 0.001 <= read_timeout <= 3600:
            return reply_error(400, f"refused: read_timeout must be >= 0.001 and <= 3600 s, got {read_timeout}")
        options = StreamOptions() if read_timeout is None else StreamOptions(read_timeout=read_timeout)
        stream, error = await start(url, options, id)
        if error is not None:
            return error
        return Response(f"start stream whose id is {stream.id}", media_type="text/plain")

    @app.post("/stop/{sid}", summary="Stop a stream", responses=NOT_FOUND)
    async def stop(sid: str):
        if not await run(server.stop_stream, parse_sid(sid)):
            return reply_error(404, f"no stream {sid}")
        return Response(f"stop stream {sid} success", media_type="text/plain")

    @app.get("/list", summary="List the streams", response_model=list[StreamInfo])
    async def list_streams():
        return [shown(i) for i in await run(server.runners.infos)]

    @app.get("/get_msgs/{sid}", summary="Take the messages a stream's subgraph sent",
             responses={200: MESSAGES, **NOT_FOUND}, response_class=JSONResponse)
    async def get_msgs(sid: str):
        msgs = await run(server.runners.msgs, parse_sid(sid))
        if msgs is None:
            return reply_error(404, f"no stream {sid}")
        return JSONResponse(msgs)  # the bytes MegFlow's clients parsed for string messages

    @app.get("/streams", summary="The streams (JSON)", response_model=list[StreamInfo], tags=["streams"])
    async def streams():
        return [shown(i) for i in await run(server.runners.infos)]

    @app.post("/streams", summary="Start a stream (JSON)", status_code=201, response_model=StreamInfo,
              tags=["streams"], responses={400: REFUSED, 409: IN_USE})
    async def create(spec: StreamSpec = Body(openapi_examples={
            "camera": {"summary": "a named camera", "value": {"url": "rtsp://192.0.2.10:554/stream1", "id": "gate",
                                                               "options": {"read_timeout": 10}}},
            "numbered": {"summary": "MegFlow's next integer id", "value": {"url": "rtsp://192.0.2.11/live"}}})):
        stream, error = await start(spec.url, spec.options, spec.id)
        if error is not None:
            return error
        return shown(await run(server.runners.info_of, stream.id) or {})

    @app.get("/streams/{sid}", summary="One stream (JSON)", response_model=StreamInfo, tags=["streams"],
             responses=NOT_FOUND)
    async def one(sid: str):
        info = await run(server.runners.info_of, parse_sid(sid))
        return reply_error(404, f"no stream {sid}") if info is None else shown(info)

    @app.delete("/streams/{sid}", summary="Stop a stream and forget it (JSON)", status_code=204, tags=["streams"],
                responses=NOT_FOUND, response_class=Response)
    async def delete(sid: str):
        if not await run(server.stop_stream, parse_sid(sid)):
            return reply_error(404, f"no stream {sid}")
        return Response(status_code=204)

    add_event_routes(app, server.log, lambda sid: sid in server.streams or sid in server.runners.remote)
    add_view_routes(app, lambda: {**server.runners.remote, **server.streams})
    return app
