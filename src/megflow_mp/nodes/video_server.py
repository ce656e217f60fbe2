"""VideoServer: one subgraph instance per video stream, driven over HTTP.

``POST /start/{url}`` (percent-encoded rtsp/rtsps/http(s) URL or a file path under ``allow_dirs``)
starts decoding and creates the stream's subgraph instance (its light nodes live in their
existing workers; nodes declared at top level are shared by every stream); ``POST /stop/{id}``
closes its input (queued frames are still processed, FAQ semantics); ``GET /list`` gives each
stream's id, url, state (starting, running, reconnecting, finished, stopped, error + reason),
frames decoded and dropped, corrupt packets and frames skipped (the stream goes on) and current
fps (and, with replicas, the ``replica`` that runs it and, on a cluster, its ``machine``);
``GET /get_msgs/{id}`` returns and clears the string messages the stream's subgraph sent out
(bounded: ``max_msgs``, the oldest dropped and counted).

``cloned = N``: replica 0 serves HTTP, and every replica runs streams (decodes them and creates
their instances); a new stream goes to the least loaded one. On a cluster the replicas spread over
the machines and each stream's instance stays on its replica's machine (:mod:`..video.runners`).

Args: ``port``, ``host`` (default 127.0.0.1: other machines reach it only when ``host`` says so),
``timeout``, ``max_header`` as the other servers; ``allow_dirs``: the directories whose files
``/start`` may open (default none: only live URLs; give ``["."]`` for the working directory);
``max_msgs`` (default 1000); ``history`` (ended streams /list keeps, default 1000);
reader options ``transport`` ("tcp"), ``open_timeout``,
``read_timeout``, ``backoff_initial``, ``backoff_max``, ``max_reconnects``, ``policy`` ("block" or
"drop_oldest"; default block for files, drop_oldest for live sources), ``queue_size``, ``threads``.
``POST /start/{url}?read_timeout=S`` sets one stream's read timeout (a camera that keeps its socket
open and sends nothing for S seconds is reconnected).
"""

import asyncio
import threading
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel, Field

from ..frontdoor import FrontDoor
from ..registry import register
from ..runtime import malloc
from ..runtime.hub import Future
from ..runtime.threads import run_on_hub
from ..errors import Cancelled, ReaderError
from ..video.source import ReaderOptions, is_live
from ..live.channel import LiveChannel
from ..live.routes import add_view_routes
from ..video.runners import Runners
from ..video.stream import Stream
from .http_routes import make_app, reply_error

LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
READER_ARGS = ("transport", "open_timeout", "read_timeout", "backoff_initial", "backoff_max", "max_reconnects",
               "policy", "queue_size", "threads", "realtime")


def reader_options(args) -> ReaderOptions:
    return ReaderOptions(**{k: args[k] for k in READER_ARGS if k in args})


class StreamInfo(BaseModel):
    """One stream as ``GET /list`` shows it."""

    model_config = {"json_schema_extra": {"examples": [{
        "id": 0, "url": "rtsp://127.0.0.1:8554/test", "state": "running", "reason": None, "frames": 1250,
        "dropped": 3, "corrupt": 0, "fps": 25.0, "reconnects": 0, "messages_dropped": 0}]}}
    id: int
    url: str
    state: str = Field(description="starting, running, reconnecting, finished, stopped or error")
    reason: str | None = Field(None, description="why it is reconnecting or failed")
    frames: int = Field(description="frames decoded")
    dropped: int = Field(description="frames dropped because the pipeline was slower than a live source")
    corrupt: int = Field(description="packets the decoder refused and frames it marked corrupt (damaged data, "
                         "missing references): skipped, the stream goes on")
    fps: float = Field(description="decode rate over the last second")
    reconnects: int
    messages_dropped: int = Field(description="oldest messages dropped because get_msgs was not called")
    replica: int = Field(0, description="the VideoServer replica that runs it (cloned = N)")
    machine: str | None = Field(None, description="on a cluster: the machine that decodes it and runs its instance")


@register(name="VideoServer", inputs=["inp"], outputs=["out"])
class VideoServer:
    interactive = True  # answers HTTP clients: its worker keeps the normal scheduling policy
    dynamic_outputs = ("out",)
    dynamic_inputs = ("inp",)
    drain_as_source = True

    def __init__(self, name, args):
        self.name = name
        self.options = reader_options(args)
        self.max_msgs = int(args.get("max_msgs", 1000))
        self.history = int(args.get("history", 1000))
        dirs = args.get("allow_dirs", [])
        self.allow_dirs = [Path(d).resolve() for d in ([dirs] if isinstance(dirs, str) else dirs)]
        self.door_args = dict(host=str(args.get("host", "127.0.0.1")), port=int(args.get("port", 8080)),
                              timeout=float(args.get("timeout", 30)), max_header=int(args.get("max_header", 64 << 10)))
        self.door = None  # replica 0's (bind_runtime)
        self.streams: dict[int, Stream] = {}
        self.lock = threading.Lock()
        self.next_id = 0

    def bind_runtime(self, worker, node):
        self.worker, self.node, self.hub = worker, node, worker.hub
        malloc.limit_arenas()  # before any thread of a stream: their arenas' free memory stays bounded
        self.dyn = node.spec.dynamic["out"]
        back = node.spec.dynamic.get("inp")  # the subgraph output whose messages come back, if wired
        self.results = back.port if back else None
        self.runners = Runners(self, worker, node)
        if self.runners.is_door:  # the port is taken now: a busy one fails the install, not the first request
            self.door = FrontDoor(self.name, **self.door_args)

    def exec(self):
        if self.door is not None:
            self.door.start(self.build_app(), self.hub, None)
        try:
            Future(self.hub).wait()  # serve until drained
        except Cancelled:
            if self.door is not None:
                self.door.stop_accepting()
            for stream in list(self.streams.values()):
                stream.stop()
            for stream in list(self.streams.values()):
                stream.done.wait()

    # -- stream control (HTTP threads) ---------------------------------------------------------------------
    def check_url(self, url: str) -> str | None:
        """None when ``url`` may be opened, else the reason it is refused."""
        if url.startswith(LIVE_SCHEMES):
            return None
        if "://" in url:
            return f"only rtsp, rtsps, http and https URLs or files are accepted, not {url.split('://')[0]}://"
        if not self.allow_dirs:
            return "local files are not accepted (the server's allow_dirs is empty)"
        try:
            path = Path(url).resolve()
            if not any(path == d or d in path.parents for d in self.allow_dirs):
                return f"{url} is not under an allowed directory ({', '.join(map(str, self.allow_dirs))})"
            if not path.is_file():
                return f"no such file: {url}"
        except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a name too long, a symlink loop
            return f"not a usable path: {getattr(exc, 'strerror', None) or exc}"
        return None

    @staticmethod
    def open_target(url: str) -> str:
        """What the reader opens for an accepted ``url``: a live URL as is, a file by its resolved
        absolute path, so that FFmpeg never reads a prefix of the name as a protocol (``concat:``,
        ``subfile,,``, ``file:``, ...) that would open other files than the one checked."""
        return url if url.startswith(LIVE_SCHEMES) else str(Path(url).resolve())

    def start_stream(self, url: str, options: ReaderOptions | None = None, sid: int | None = None):
        """Start a stream (a new id unless ``sid`` is given) on the least loaded replica; returns it
        (a :class:`~..video.runners.RemoteStream` when another replica runs it). Raises ReaderError
        when it cannot be opened. Replica 0, from an HTTP thread."""
        if sid is None:
            with self.lock:
                sid, self.next_id = self.next_id, self.next_id + 1
        return self.runners.start(sid, url, options or self.options)

    def start_local(self, sid: int, url: str, options: ReaderOptions) -> Stream:
        """Open and start stream ``sid`` in this process (from a thread other than the hub's)."""
        stream = Stream(sid, url, options, self.worker, self.node, self.dyn, self.results, self.max_msgs)
        stream.view = LiveChannel(f"stream {sid}")  # /view/{sid}: what a Visualize node of the stream sends
        stream.open()  # a file that cannot be decoded fails here, before any instance exists
        self.streams[sid] = stream
        ended = [k for k, s in self.streams.items() if s.done.done]
        for k in ended[: max(0, len(ended) - self.history)]:  # /list keeps the latest ended streams
            self.streams.pop(k, None)
        run_on_hub(self.hub, stream.attach, self.dyn.path)
        self.hub.call_soon_threadsafe(self.hub.spawn, self._report_end, stream)
        return stream

    def _report_end(self, stream: Stream) -> None:
        stream.done.wait()
        self.runners.ended(stream)

    def build_app(self):
        from fastapi import Query, Response
        from starlette.convertors import PathConvertor, register_url_convertor

        class AnyPath(PathConvertor):
            regex = "(?s:.*)"  # starlette's path stops at a newline: /start/a%0Ab was 404, not refused

        register_url_convertor("anypath", AnyPath())
        app = make_app(f"megflow-mp VideoServer {self.name}",
                       "Start and stop video streams; each runs in its own subgraph instance.")
        not_found = {404: {"description": "no stream with this id"}}

        @app.post("/start/{url:anypath}", summary="Start a stream",
                  responses={200: {"content": {"text/plain": {"example": "start stream whose id is 0"}}},
                             400: {"description": "refused URL or path, or a file that cannot be decoded"}})
        async def start(url: str, read_timeout: float | None = Query(
                None, description="this stream's read timeout in seconds, 0 < S <= 3600 (default: the node's "
                "read_timeout): a live source that sends nothing for this long is reconnected")):
            reason = self.check_url(url)
            if reason:
                return reply_error(400, f"refused: {reason}")
            if read_timeout is not None and not 0 < read_timeout <= 3600:
                return reply_error(400, f"refused: read_timeout must be > 0 and <= 3600 s, got {read_timeout}")
            options = self.options if read_timeout is None else replace(self.options, read_timeout=read_timeout)
            loop = asyncio.get_running_loop()
            try:
                stream = await loop.run_in_executor(None, self.start_stream, self.open_target(url), options)
            except ReaderError as exc:
                return reply_error(400, f"cannot decode: {exc}")
            return Response(f"start stream whose id is {stream.id}", media_type="text/plain")

        @app.post("/stop/{sid}", summary="Stop a stream", responses=not_found)
        async def stop(sid: int):
            if not await asyncio.get_running_loop().run_in_executor(None, self.runners.stop, sid):
                return reply_error(404, f"no stream {sid}")
            return Response(f"stop stream {sid} success", media_type="text/plain")

        @app.get("/list", summary="List the streams", response_model=list[StreamInfo])
        async def list_streams():
            return await asyncio.get_running_loop().run_in_executor(None, self.runners.infos)

        @app.get("/get_msgs/{sid}", summary="Take the messages a stream's subgraph sent", responses=not_found,
                 response_model=list[str])
        async def get_msgs(sid: int):
            msgs = await asyncio.get_running_loop().run_in_executor(None, self.runners.msgs, sid)
            if msgs is None:
                return reply_error(404, f"no stream {sid}")
            return msgs

        add_view_routes(app, lambda: {**self.runners.remote, **self.streams})
        return app

    def __del__(self):
        door = getattr(self, "door", None)
        if door is not None:
            door.close()


__all__ = ["VideoServer", "reader_options", "is_live"]
