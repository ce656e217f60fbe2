"""Where a VideoServer's streams run: its replicas (``cloned = N``).

Replica 0 serves HTTP and keeps the directory of every stream; every replica, 0 included, is a
*runner*: it decodes its streams and creates their subgraph instances in its own process. A new
stream goes to the runner with the fewest live streams (ties: the lowest replica). On a cluster the
replicas of an unplaced VideoServer are dealt over the machines (:mod:`megflow_mp.cluster.placement`)
and an instance keeps its nodes on its runner's machine (:meth:`InstancePlan.procs_of
<megflow_mp.plan.InstancePlan.procs_of>`), so frames cross the network only to shared nodes
elsewhere. On one machine, replicas spread decoding over processes.

Replica 0 reaches the other runners with worker calls (:meth:`Worker.call
<megflow_mp.runtime.worker.Worker.call>`): ``video_server.start(sid, url, options, on_error)`` -> None or
the reason it could not open; ``video_server.stop(sid)`` -> bool; ``video_server.list()`` -> the infos of
the runner's streams; ``video_server.msgs(sid)`` -> the messages taken. A runner tells replica 0
``video_server.ended(sid, info)`` when a stream ended, and hands it its streams' messages as they
come, ``video_server.messages([(sid, ts, JSON text), ...])`` (one call per batch, no answer): replica 0
numbers them and serves them live (``/events``, :mod:`.messages`) whichever runner runs the stream. ``GET /list`` shows each stream's ``machine``
(on a cluster) and ``replica``.

A stream whose graph failed is started again by the runner that runs it (``on_error``, see
:class:`~megflow_mp.nodes.video_server.VideoServer`); a runner reports ``ended`` only for a stream
that will not be started again. Stream ids are MegFlow's integers or names (:mod:`.spec`).

A runner that dies for good (its machine lost while the app goes on) or is restarted: its streams
that had not ended are ``error`` with the reason; with ``restart`` on the VideoServer, live ones
(rtsp, http) are started again, under the same id, on the least loaded runner left. Live views
(``/view/{id}``) are served for the streams of replica 0.
"""

from __future__ import annotations

import logging
import threading

from ..errors import PeerDied, ReaderError
from ..runtime.hub import Future
from ..runtime.threads import run_on_hub
from .redact import redact_url, scrub
from .source import is_live
from .spec import sid_order

log = logging.getLogger("megflow_mp")


class RemoteStream:
    """Replica 0's entry for a stream that runs on another runner (``proc``): what ``/list`` shows
    once it ended (``final``), and what is needed to start it again (``url``, the real one;
    ``shown_url`` is what is shown)."""

    view = None  # live views are served for replica 0's own streams

    def __init__(self, sid, url: str, options, on_error: str, proc: int):
        self.id, self.url, self.options, self.on_error, self.proc = sid, url, options, on_error, proc
        self.shown_url = redact_url(url)
        self.final: dict | None = None
        self.lost: dict | None = None  # the last info, turned into an error, when its runner died

    @property
    def state(self) -> str:
        info = self.final or self.lost
        return info["state"] if info else "running"

    @property
    def ended(self) -> bool:
        return self.final is not None or self.lost is not None


class Runners:
    """The runners of one VideoServer (``server``: the node object of this replica)."""

    def __init__(self, server, worker, node):
        self.server, self.worker, self.hub = server, worker, worker.hub
        decl = worker.app.procs[worker.index][0]
        self.procs = worker.app.decl_procs[decl]  # the replicas' processes, replica 0 first
        self.restart = worker.app.policy(decl).restarts
        self.door = self.procs[0]
        self.is_door = worker.index == self.door
        self.lock = threading.Lock()
        self.remote: dict[int, RemoteStream] = {}  # replica 0: streams run by the other runners
        self.gone: set[int] = set()  # runners that died for good
        handlers = worker.handlers
        handlers["video_server.start"] = self._on_start
        handlers["video_server.stop"] = lambda src, sid: self._local_stop(sid)
        handlers["video_server.list"] = lambda src: [self.info(s) for s in list(server.streams.values())]
        handlers["video_server.msgs"] = lambda src, sid: self._local_msgs(sid)
        handlers["video_server.ended"] = self._on_ended
        handlers["video_server.messages"] = lambda src, batch: self.deliver(batch)
        if self.is_door:
            worker.peer_hooks.append(self._on_peer)

    # -- replica 0: the directory -----------------------------------------------------------------------
    def pick(self) -> int:
        """The runner with the fewest live streams (the lowest replica on a tie)."""
        load = {p: 0 for p in self.procs if p not in self.gone}
        for s in list(self.server.streams.values()):
            if not s.done.done:
                load[self.door] += 1
        for r in list(self.remote.values()):
            if not r.ended and r.proc in load:
                load[r.proc] += 1
        return min(load, key=lambda p: (load[p], self.procs.index(p)))

    def start(self, sid, url: str, options, on_error: str, proc: int | None = None):
        """Start stream ``sid`` on the least loaded runner (or ``proc``); raises ReaderError when it
        cannot be opened there. Called from an HTTP thread."""
        proc = self.pick() if proc is None else proc
        if proc == self.worker.index:
            self.remote.pop(sid, None)  # an ended stream of the same id elsewhere: this one replaces it
            return self.server.start_local(sid, url, options, on_error)
        remote = RemoteStream(sid, url, options, on_error, proc)
        with self.lock:
            before, self.remote[sid] = self.remote.get(sid), remote
        error = self._call(proc, "video_server.start", sid, url, options, on_error)
        if error is not None:
            with self.lock:
                if before is None:
                    self.remote.pop(sid, None)
                else:
                    self.remote[sid] = before
            raise ReaderError(remote.shown_url, scrub(str(error), url))
        return remote

    def active(self, sid) -> bool:
        """Whether stream ``sid`` exists and has not ended for good (a stream being started again
        after a failure is active)."""
        remote = self.remote.get(sid)
        if remote is not None:
            return not remote.ended
        stream = self.server.streams.get(sid)
        return stream is not None and (not stream.done.done or stream.state == "restarting")

    def stop(self, sid) -> bool:
        remote = self.remote.get(sid)
        if remote is None:
            return self._local_stop(sid)
        return bool(self._call(remote.proc, "video_server.stop", sid, default=False))

    def msgs(self, sid) -> list | None:
        """The messages of stream ``sid`` (None: no such stream)."""
        remote = self.remote.get(sid)
        if remote is None:
            return self._local_msgs(sid)
        return self._call(remote.proc, "video_server.msgs", sid, default=[])

    def infos(self) -> list[dict]:
        """Every stream as ``/list`` shows it, by id."""
        out = {s.id: self.info(s) for s in list(self.server.streams.values())}
        remote = list(self.remote.values())
        running = {r.proc for r in remote if not r.ended}
        for proc in sorted(running):
            for info in self._call(proc, "video_server.list", default=[]):
                if info["id"] in self.remote:
                    out[info["id"]] = info
        for r in remote:
            if r.id in self.server.streams:  # started again here
                continue
            if r.ended:
                out[r.id] = r.final or r.lost
            elif r.id not in out:  # not listed by its runner yet (starting) or its runner just died
                out[r.id] = {**blank_info(r, "starting", None), **self.where(r.proc)}
        return [out[k] for k in sorted(out, key=sid_order)]

    def info_of(self, sid) -> dict | None:
        """Stream ``sid`` as ``/list`` shows it (None: no such stream)."""
        if sid in self.server.streams and sid not in self.remote:
            return self.info(self.server.streams[sid])
        return next((i for i in self.infos() if i["id"] == sid), None)

    def info(self, stream) -> dict:
        return {**stream.info(), **self.where(self.worker.index)}

    def where(self, proc: int) -> dict:
        """The ``replica`` (and, on a cluster, ``machine``) of runner ``proc``, as /list shows them."""
        out = {"replica": self.procs.index(proc)}
        if proc == self.worker.index and self.worker.machine:
            out["machine"] = self.worker.machine
        return out

    def _call(self, proc: int, name: str, *args, default=None):
        """Call runner ``proc`` (from an HTTP thread) and wait for its answer; ``default`` when it
        died meanwhile."""
        fut = run_on_hub(self.hub, self.worker.call, proc, name, *args)
        value = fut.wait()
        if isinstance(value, PeerDied):
            return default
        if isinstance(value, BaseException):
            raise value
        return value

    def _on_ended(self, src, sid, info) -> None:
        remote = self.remote.get(sid)
        if remote is not None and remote.proc == src:
            remote.final = info
            self._trim()
            self.server.stream_ended(sid, info["state"])

    def _trim(self) -> None:
        ended = [k for k, r in self.remote.items() if r.ended]
        for k in ended[: max(0, len(ended) - self.server.history)]:
            self.remote.pop(k, None)
            self.server.forget_messages(k)

    def _on_peer(self, proc: int, restarted: bool, why: str | None) -> None:
        """Runner ``proc`` died (for good, or ``restarted``; ``why``: the supervisor's reason): its
        streams that had not ended are lost; live ones start again elsewhere when the VideoServer
        has ``restart``."""
        if proc not in self.procs or proc == self.door:
            return
        if not restarted:
            self.gone.add(proc)
        replica = self.procs.index(proc)
        why = (f"its runner (replica {replica}) died and was restarted" if restarted else
               f"its runner (replica {replica}) is gone: {why or 'its process ended'}")
        for r in [r for r in list(self.remote.values()) if r.proc == proc and not r.ended]:
            again = self.restart and is_live(r.url)
            log.warning("stream %s (%s): %s%s", r.id, r.shown_url, why, "; starting it again" if again else "")
            r.lost = {**blank_info(r, "error", why), **self.where(proc)}
            if again:
                threading.Thread(target=self._start_again, args=(r,), daemon=True).start()

    def _start_again(self, r: RemoteStream) -> None:
        """Start lost stream ``r`` again under its id (a thread); /list shows it lost meanwhile."""
        try:
            self.start(r.id, r.url, r.options, r.on_error)
        except Exception as exc:  # noqa: BLE001 - shown in /list
            why = scrub(str(exc), r.url)
            log.error("stream %s (%s) could not start again: %s", r.id, r.shown_url, why)
            r.lost = {**r.lost, "reason": f"{r.lost['reason']}; starting it again failed: {why}"}
            return
        with self.lock:
            if self.remote.get(r.id) is r:  # it runs here now
                del self.remote[r.id]

    # -- every runner -------------------------------------------------------------------------------------
    def _on_start(self, src, sid, url, options, on_error) -> Future:
        """Open and start stream ``sid`` here (on a thread: opening may take seconds); the answer is
        None, or the reason it could not be opened."""
        fut = Future(self.hub)

        def run():
            try:
                self.server.start_local(sid, url, options, on_error)
                result = None
            except ReaderError as exc:
                result = scrub(str(exc), url)
            except Exception as exc:  # noqa: BLE001 - the caller reports it
                result = scrub(f"{type(exc).__name__}: {exc}", url)
            self.hub.call_soon_threadsafe(fut.set, result)

        threading.Thread(target=run, name=f"megflow-start-{sid}", daemon=True).start()
        return fut

    def ended(self, stream) -> None:
        """Stream ``stream`` of this runner ended (on the hub): replica 0 keeps its last info."""
        if not self.is_door:
            self.worker.call(self.door, "video_server.ended", stream.id, self.info(stream), reply=False)

    def deliver(self, batch: list) -> None:
        """A batch of messages of this runner's streams (on the hub): numbered by replica 0."""
        if self.is_door:
            if self.server.log is not None:
                self.server.log.append_many(batch)
        else:
            self.worker.call(self.door, "video_server.messages", batch, reply=False)

    def _local_stop(self, sid) -> bool:
        stream = self.server.streams.get(sid)
        if stream is None:
            return False
        stream.stop()
        return True

    def _local_msgs(self, sid) -> list | None:
        stream = self.server.streams.get(sid)
        return None if stream is None else stream.take_messages()


def blank_info(r: RemoteStream, state: str, reason: str | None) -> dict:
    """What ``/list`` shows of remote stream ``r`` while its runner has no info of it."""
    return {"id": r.id, "url": r.shown_url, "state": state, "reason": reason, "frames": 0, "dropped": 0, "corrupt": 0,
            "fps": 0.0, "reconnects": 0, "messages_dropped": 0, "restarts": 0, "last_error": None,
            "latency_p50_ms": None, "latency_p95_ms": None}
