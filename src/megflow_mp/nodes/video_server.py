"""VideoServer: one subgraph instance per video stream, driven over HTTP, kept alive by the server.

``POST /start/{url}`` (percent-encoded rtsp/rtsps/http(s) URL or a file path under ``allow_dirs``)
starts decoding and creates the stream's subgraph instance (its light nodes live in their
existing workers; nodes declared at top level are shared by every stream); ``?id=gate`` names the
stream (:mod:`..video.spec`: without it, MegFlow's integer ids); ``POST /stop/{id}`` closes its
input (queued frames are still processed, FAQ semantics); ``GET /list`` gives each stream's id,
url, state (starting, running, reconnecting, restarting, finished, stopped, error + reason),
frames decoded and dropped, corrupt packets and frames skipped (the stream goes on), current fps,
restarts and last error, the p50/p95 age of a frame when its result left the subgraph (and, with
replicas, the ``replica`` that runs it and, on a cluster, its ``machine``); ``GET /get_msgs/{id}``
returns and clears the messages the stream's subgraph sent out (strings as they are, JSON values as
objects; bounded: ``max_msgs``, the oldest dropped and counted). The JSON resource ``/streams`` does
the same for programs (:mod:`.video_routes`). Every message is also delivered, numbered, to live
consumers: ``GET /streams/{id}/events`` and ``GET /events`` (Server-Sent Events, :mod:`.events_routes`,
:mod:`..video.messages`), whichever replica runs its stream.

Kept alive: ``streams = [{ id = "gate", url = "rtsp://...", read_timeout = 5, ... }]`` start with the
app; streams started over HTTP are recorded in the state directory (:mod:`..video.state`) and
started again, under their ids, when the app starts again; ``/stop`` forgets one. A stream whose
graph failed (a node raised on one of its frames) is started again when its ``on_error`` is
``"restart"`` (the default for live sources; ``"end"``, MegFlow's behaviour, for files), after a
backoff (``backoff_initial`` doubling to ``backoff_max``), at most ``max_restarts`` times within
``restart_window`` seconds (:mod:`..video.healing`); its source failing is the reader's matter
(reconnects), not a restart.

``cloned = N``: replica 0 serves HTTP, and every replica runs streams (decodes them and creates
their instances); a new stream goes to the least loaded one. On a cluster the replicas spread over
the machines and each stream's instance stays on its replica's machine (:mod:`..video.runners`).

Arguments: the table below. The server's own (``port``, ``host``: other machines reach it only when
``host`` says so, ``timeout``, ``max_header``, ``tls_cert``, ``tls_key``, ``insecure``) as the other
servers'. ``allow_dirs``: the directories whose files ``/start`` may open (none: only live URLs;
``["."]`` for the working directory). ``allow_hosts``: the hosts live URLs may name
(:mod:`..video.hosts`; host names, ``*.cams.example.com``, addresses and networks like ``10.0.0.0/8``
or ``[fd00::]/8``; none: any host), a host matching none is refused (400 naming the host); with or
without it, link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254,
``metadata.google.internal``; host names are resolved and each address checked) are refused unless
listed; it applies to ``/start``, ``POST /streams``, declared and recorded streams. ``streams``:
the declared streams, each ``{ id, url }`` and any of the reader options and ``on_error``. The
reader options (``transport`` to ``realtime``) are every stream's defaults; each may also be given
per stream (``streams`` entries, ``POST /streams`` options). ``POST /start/{url}?read_timeout=S``
sets one stream's read timeout (a camera that keeps its socket open and sends nothing for S seconds
is reconnected).

Secrets in URLs (the user info, ``password=``, ``token=``, ``api_key=``, ...) are shown as ``***``
wherever a URL or a reason is shown: ``/list``, ``/streams``, ``/view``, the dashboard, metrics, logs
and replies (:mod:`..video.redact`); the reader opens the real URL, and the state file keeps it.
"""

import logging
import threading
from pathlib import Path

from ..errors import Cancelled, ReaderError
from ..frontdoor import FrontDoor
from ..live.channel import LiveChannel
from ..registry import register
from ..runtime import malloc
from ..runtime.hub import Future
from ..runtime.threads import run_on_hub
from ..video.healing import RestartBudget
from ..video.hosts import HostPolicy
from ..video.messages import MessageLog, SeqFile
from ..video.runners import Runners
from ..video.source import ReaderOptions, is_live
from ..video.redact import redact_url, scrub
from ..video.spec import StreamOptions, name_problem
from ..video.state import StreamStore, state_dir
from ..video.stream import Stream
from .video_args import VideoServerArgs, reader_options

log = logging.getLogger("megflow_mp")
LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


class StreamRefused(Exception):
    """A stream cannot be started as asked: ``status`` is the HTTP answer (400 a refused URL or id,
    409 an id in use), ``reason`` what to tell the client."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@register(name="VideoServer", inputs=["inp"], outputs=["out"], args=VideoServerArgs)
class VideoServer:
    interactive = True  # answers HTTP clients: its worker keeps the normal scheduling policy
    dynamic_outputs = ("out",)
    dynamic_inputs = ("inp",)
    drain_as_source = True

    def __init__(self, name, args):
        self.name = name
        a = VideoServerArgs.of(args, f"VideoServer {name!r}")
        self.options = reader_options(a)
        self.max_msgs, self.events_buffer, self.events_buffer_all = a.max_msgs, a.events_buffer, a.events_buffer_all
        self.history = a.history
        self.allow_dirs = [Path(d).resolve() for d in a.allow_dirs]
        self.hosts = HostPolicy(a.allow_hosts)
        self.door_args = a.door()  # host, port, timeout, max_header; tls_cert, tls_key, insecure (megflow_mp.auth)
        self.on_error = a.on_error  # None: per stream, restart for live sources, end for files
        self.max_restarts, self.restart_window = a.max_restarts, a.restart_window
        self.declared = [entry.spec() for entry in a.streams]
        self.declared_ids: set = set()  # the ids of the declared streams that started
        self.state_arg = a.state_dir
        self.door = None  # replica 0's (bind_runtime)
        self.store: StreamStore | None = None  # replica 0's record of the streams started over HTTP
        self.log: MessageLog | None = None  # replica 0's: every stream's delivered messages
        self.streams: dict = {}  # this runner's streams by id (int or name)
        self.budgets: dict = {}  # id -> RestartBudget of the streams this runner started again
        self.lock = threading.Lock()
        self.claimed: set = set()  # ids being started now (two requests for one name: one gets 409)
        self.next_id = 0
        self.kept_started = threading.Event()  # declared and recorded streams were started (replica 0)
        self.closing = False

    def bind_runtime(self, worker, node):
        self.worker, self.node, self.hub = worker, node, worker.hub
        malloc.limit_arenas()  # before any thread of a stream: their arenas' free memory stays bounded
        self.dyn = node.spec.dynamic["out"]
        back = node.spec.dynamic.get("inp")  # the subgraph output whose messages come back, if wired
        self.results = back.port if back else None
        self.runners = Runners(self, worker, node)
        if self.runners.is_door:  # the port is taken now: a busy one fails the install, not the first request
            self.door = FrontDoor(self.name, **self.door_args)
            self.door.protect(getattr(worker.app, "auth", None))  # the app's [auth] (or --auth-tokens)
            decl = worker.app.procs[worker.index][0]
            directory = state_dir(self.state_arg, worker.app.file)
            self.store = StreamStore(directory, decl)
            seqs = SeqFile(directory / f"{decl.replace('/', '_')}.seqs.json", decl)
            self.log = MessageLog(seqs, keep=self.events_buffer, keep_all=self.events_buffer_all,
                                  max_streams=max(self.history, 1))

    def exec(self):
        if self.door is not None:
            recorded = self.store.load()  # before any request: a stream started over HTTP now is not among them
            self.door.start(self.build_app(), self.hub, None)
            threading.Thread(target=self.start_kept, args=(recorded,), name="megflow-kept-streams",
                             daemon=True).start()
        try:
            Future(self.hub).wait()  # serve until drained
        except Cancelled:
            self.closing = True
            if self.door is not None:
                self.door.stop_accepting()
            for stream in list(self.streams.values()):
                stream.stop()
            for stream in list(self.streams.values()):
                stream.done.wait()
            if self.log is not None:
                self.log.close()  # live consumers get the end; the exact next numbers are written

    def build_app(self):
        """The FastAPI app of this server's front door (:mod:`.video_routes`)."""
        from .video_routes import build_app

        return build_app(self)

    # -- streams kept by the server (replica 0, a thread) ---------------------------------------------------
    def start_kept(self, recorded: list[dict]) -> None:
        """Start the declared streams, then the ``recorded`` ones (read from the state file before the
        server took requests), under their ids. A stream that cannot start is reported and the others
        go on; a recorded one whose id a client took meanwhile is left to that client's stream."""
        try:
            for spec in self.declared:
                self._start_logged(spec.id, spec.url, spec.options, declared=True)
            declared = {spec.id for spec in self.declared}
            for record in recorded:
                sid = record["id"]
                if sid in declared:
                    log.warning("VideoServer %r: recorded stream %s is also declared in the config: the config's "
                                "runs", self.name, sid)
                    continue
                try:
                    options = StreamOptions(**record["options"])
                    if isinstance(sid, str) and name_problem(sid):
                        raise ValueError(name_problem(sid))
                except (TypeError, ValueError) as exc:
                    log.warning("VideoServer %r: recorded stream %s is not usable (%s): forgotten", self.name, sid,
                                str(exc).splitlines()[0])
                    self.store.forget(sid)
                    continue
                if isinstance(sid, int):
                    with self.lock:
                        self.next_id = max(self.next_id, sid + 1)
                if self._start_logged(sid, record["url"], options, record=False) not in (None, 409):
                    self.store.forget(sid)  # its file is gone, or its URL no longer allowed
        finally:
            self.kept_started.set()

    def _start_logged(self, sid, url: str, options: StreamOptions, declared: bool = False,
                      record: bool = True) -> int | None:
        """Start a kept stream; None, or the HTTP status that says why it did not start (logged)."""
        try:
            self.start_stream(url, options, sid, declared=declared, record=record)
        except (StreamRefused, ReaderError) as exc:
            log.error("VideoServer %r: stream %s (%s) cannot start: %s", self.name, sid, redact_url(url),
                      scrub(getattr(exc, "reason", None) or str(exc), url))
            return getattr(exc, "status", 400)
        log.info("VideoServer %r: stream %s started (%s)", self.name, sid, "declared" if declared else "recorded")
        return None

    def ready_problems(self) -> list[str]:
        """Why this server is not ready yet (``/readyz``): its kept streams are still being started."""
        return [] if self.kept_started.is_set() else [f"VideoServer {self.name!r}: starting its declared and "
                                                      "recorded streams"]

    # -- stream control (HTTP threads) ---------------------------------------------------------------------
    def check_url(self, url: str) -> str | None:
        """None when ``url`` may be opened, else the reason it is refused (no secret of ``url`` in
        it). A live URL's host is checked against ``allow_hosts`` (:mod:`..video.hosts`: may resolve
        it, up to 2 s): never call this on the event loop."""
        if url.startswith(LIVE_SCHEMES):
            return self.hosts.refusal_of(url)
        if "://" in url:
            return f"only rtsp, rtsps, http and https URLs or files are accepted, not {url.split('://')[0]}://"
        if not self.allow_dirs:
            return "local files are not accepted (the server's allow_dirs is empty)"
        try:
            path = Path(url).resolve()
            if not any(path == d or d in path.parents for d in self.allow_dirs):
                dirs = ", ".join(map(str, self.allow_dirs))
                return f"{redact_url(url)} is not under an allowed directory ({dirs})"
            if not path.is_file():
                return f"no such file: {redact_url(url)}"
        except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a name too long, a symlink loop
            return f"not a usable path: {getattr(exc, 'strerror', None) or exc}"
        return None

    @staticmethod
    def open_target(url: str) -> str:
        """What the reader opens for an accepted ``url``: a live URL as is, a file by its resolved
        absolute path, so that FFmpeg never reads a prefix of the name as a protocol (``concat:``,
        ``subfile,,``, ``file:``, ...) that would open other files than the one checked."""
        return url if url.startswith(LIVE_SCHEMES) else str(Path(url).resolve())

    def start_stream(self, url: str, options: StreamOptions | None = None, sid=None, declared: bool = False,
                     record: bool = True):
        """Start a stream on the least loaded replica under ``sid`` (a name, or an integer id of a
        recorded stream; None: the next integer id) and return it (a
        :class:`~..video.runners.RemoteStream` when another replica runs it). Records it in the state
        file unless ``declared`` or not ``record``. Raises StreamRefused (a refused URL, a bad or busy
        id) or ReaderError (it cannot be opened). Replica 0, from a thread other than the hub's."""
        options = options or StreamOptions()
        reason = self.check_url(url)
        if reason:
            raise StreamRefused(400, f"refused: {reason}")
        if isinstance(sid, str) and name_problem(sid):
            raise StreamRefused(400, f"refused: {name_problem(sid)}")
        with self.lock:
            if sid is None:
                sid, self.next_id = self.next_id, self.next_id + 1
            elif sid in self.claimed or self.runners.active(sid):
                raise StreamRefused(409, f"a stream named {sid!r} is running: stop it first or give another id")
            self.claimed.add(sid)
        try:
            on_error = options.on_error or self.on_error or ("restart" if is_live(url) else "end")
            stream = self.runners.start(sid, self.open_target(url), options.reader(self.options), on_error)
        finally:
            with self.lock:
                self.claimed.discard(sid)
        if declared:
            self.declared_ids.add(sid)
        elif record:
            self.store.put(sid, url, options.model_dump(exclude_none=True))
        return stream

    def stop_stream(self, sid) -> bool:
        """Stop stream ``sid`` and forget it (it will not start again with the app); False: no such stream."""
        if not self.runners.stop(sid):
            return False
        if self.store is not None:
            self.store.forget(sid)
        return True

    def forget_messages(self, sid) -> None:
        """Stream ``sid`` left ``/list`` (replica 0 keeps the messages; another runner has none)."""
        if self.log is not None:
            self.hub.call_soon_threadsafe(self.log.forget, sid)

    def stream_ended(self, sid, state: str) -> None:
        """Stream ``sid`` ended for good with ``state`` (replica 0): a file read to its end is forgotten;
        one that failed stays recorded (it starts again with the app), and so does one stopped by the
        app's own end (a drain); ``stop_stream`` forgets those a client stops."""
        if self.store is not None and state == "finished":
            self.store.forget(sid)

    def start_local(self, sid, url: str, options: ReaderOptions, on_error: str, old: Stream | None = None) -> Stream:
        """Open and start stream ``sid`` in this process (from a thread other than the hub's); ``old``:
        the failed stream it replaces."""
        stream = Stream(sid, url, options, self.worker, self.node, self.dyn, self.results, self.max_msgs)
        stream.on_error = on_error
        stream.deliver = self.runners.deliver  # numbered and fanned out by replica 0
        if old is not None:
            stream.succeed(old)
        stream.view = LiveChannel(f"stream {sid}")  # /view/{sid}: what a Visualize node of the stream sends
        stream.open()  # a file that cannot be decoded fails here, before any instance exists
        self.streams[sid] = stream
        ended = [k for k, s in self.streams.items() if s.done.done and s.state != "restarting"]
        for k in ended[: max(0, len(ended) - self.history)]:  # /list keeps the latest ended streams
            self.streams.pop(k, None)
            self.forget_messages(k)
        run_on_hub(self.hub, stream.attach, self.dyn.path)
        self.hub.call_soon_threadsafe(self.hub.spawn, self._report_end, stream)
        if self.closing:  # the app began to stop meanwhile
            stream.stop()
        return stream

    def _report_end(self, stream: Stream) -> None:
        stream.done.wait()
        if not self._heal(stream):
            self._ended(stream)

    def _ended(self, stream: Stream) -> None:
        """Stream ``stream`` of this runner ended for good (on the hub)."""
        self.runners.ended(stream)
        if self.runners.is_door:
            self.stream_ended(stream.id, stream.state)

    # -- self-healing (any runner) -------------------------------------------------------------------------
    def _heal(self, stream: Stream) -> bool:
        """Start ``stream`` again if it failed in its graph and its ``on_error`` says so (on the hub);
        False when it ended for good."""
        if not stream.failed_in_graph or stream.on_error != "restart" or stream.stopped or self.closing:
            return False
        budget = self.budgets.get(stream.id)
        if budget is None:
            budget = self.budgets[stream.id] = RestartBudget(self.max_restarts, self.restart_window,
                                                             stream.options.backoff_initial,
                                                             stream.options.backoff_max)
        delay = budget.next_delay()
        if delay is None:
            stream.given_up(f"not started again: {budget.describe()} used up")
            log.error("stream %s (%s): failed %d times within %g s; not started again", stream.id, stream.shown_url,
                      budget.limit + 1, budget.window)
            return False
        stream.restarting(delay)
        log.warning("stream %s (%s): starting it again in %.1f s (restart %d)", stream.id, stream.shown_url, delay,
                    stream.restarts + 1)
        threading.Thread(target=self._restart, args=(stream, delay), name=f"megflow-restart-{stream.id}",
                         daemon=True).start()
        return True

    def _restart(self, old: Stream, delay: float) -> None:
        """Start failed stream ``old`` again after ``delay`` seconds (a thread), unless it is stopped
        meanwhile."""
        if old.stop_asked.wait(delay) or self.closing:
            old.restart_cancelled()
        else:
            try:
                self.start_local(old.id, old.url, old.options, old.on_error, old=old)
                return
            except Exception as exc:  # noqa: BLE001 - a file gone meanwhile: shown in /list
                why = scrub(str(exc), old.url)
                old.given_up(f"starting it again failed: {why}")
                log.error("stream %s (%s): starting it again failed: %s", old.id, old.shown_url, why)
        self.hub.call_soon_threadsafe(self._ended, old)

    def __del__(self):
        door = getattr(self, "door", None)
        if door is not None:
            door.close()


__all__ = ["VideoServer", "reader_options", "is_live", "StreamRefused"]
