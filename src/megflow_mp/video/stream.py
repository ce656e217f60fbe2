"""One video stream feeding one subgraph instance (used by VideoServer and VideoInput).

Threads and tasks of a stream, all in the creator node's worker:
- the reader's decode thread (PyAV, :mod:`.reader`) decodes each frame straight into this worker's
  shared memory (written once, sent on by reference) and fills a small frame queue;
- a hub task (the feeder) takes every frame queued so far (``drain``: no thread hand-off per frame;
  the decode thread wakes it only when it found the queue empty) and sends each
  into the instance as ``{'data': BGR frame}`` with ``from_addr`` = stream id and ``partial_id`` =
  frame index; a full pipeline parks the feeder (backpressure), and the reader's policy decides
  what happens to frames meanwhile (block for files, drop-oldest for live sources);
- a hub task collects what the instance sends out of its graph output (the stream's messages):
  each is kept for ``/get_msgs`` (``messages``, bounded by ``max_msgs``) and handed, with the time
  it left the subgraph, to ``deliver`` (the server's: numbered and fanned out by replica 0,
  :mod:`.messages`), in batches of what arrived together.
When the reader ends (file end, stop, gave up) the instance's input is closed; frames already
queued are processed, the instance ends, and ``done`` is set. When a node of the instance raises
(or a shared node raises on one of its frames) the stream is ``error`` with that failure as its
reason (``failed_in_graph``), decoding stops and the instance ends; other streams are not touched.
Whether it starts again is its server's choice (``on_error``): the server then makes a new
:class:`Stream` with the same id that carries ``restarts``, ``last_error`` and the messages not
taken yet (:meth:`Stream.succeed`), and shows this one ``restarting`` meanwhile.
Each result that leaves the instance is timed against its frame's decoding (:mod:`.latency`).
``url`` is the real URL (the reader opens it; a restart reuses it); ``shown_url`` is what ``info()``,
logs and reasons show (its secrets as ``***``, :mod:`.redact`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from ..envelope import Envelope
from ..live import view_frame
from ..observe import watch_stream
from ..observe.catalog import BUCKETS
from ..runtime.hub import Future
from .latency import Latency
from .messages import encode_message
from .redact import redact_url, scrub
from .source import ReaderOptions

log = logging.getLogger("megflow_mp")
COLLECT_BATCH = 256  # messages handed to deliver at most at once


class Stream:
    def __init__(self, sid, url: str, options: ReaderOptions, worker, node, dyn, results: str | None,
                 max_msgs: int = 1000):
        self.id, self.url, self.shown_url = sid, url, redact_url(url)
        self.options = options
        self.on_error = "end"  # set by the server: "restart" starts it again after a failure in its graph
        self.restarts, self.last_error = 0, None  # carried by the stream that replaces this one
        self.failed_in_graph = False  # it ended because a node raised (not its source)
        self.latency = Latency(BUCKETS["megflow_stream_latency_seconds"])
        self.worker, self.node, self.dyn, self.results = worker, node, dyn, results
        self.hub = worker.hub
        from .reader import StreamReader  # PyAV is loaded by the processes that decode, not by check

        self.reader = StreamReader(url, options, on_state=self._on_state, alloc=worker.arena.empty)
        self.messages: deque = deque()
        self.max_msgs = max_msgs
        self.msgs_dropped = 0
        self.warned_type = False  # a message JSON cannot hold was reported (once per stream)
        self.deliver = None  # fn([(id, ts, JSON text)]) on the hub: the server's (VideoServer), or none
        self.state, self.reason = "starting", None  # written together under _status (read by /list)
        self._status = threading.Lock()
        self.stopped = False
        self.stop_asked = threading.Event()  # set by stop(): also cancels a restart that is pending
        self.child = None  # the instance handle, from attach() until the stream ended
        self._fed = self._collected = None  # set by attach(): the feeder ended, the results were all read
        self.final: dict = {}  # the reader's counts once it is let go
        self.view = None  # the stream's LiveChannel (VideoServer): Visualize frames go there, not to messages
        self.done = Future(self.hub)
        self.sent = 0  # frames sent into the instance
        watch_stream(self)

    def succeed(self, old: "Stream") -> None:
        """This stream replaces ``old`` (same id, started again after it failed): it carries on its
        restart count, last error and the messages nobody took yet (their numbers continue: replica 0
        numbers them by stream id)."""
        self.restarts, self.last_error = old.restarts + 1, old.last_error
        self.messages, self.msgs_dropped = old.messages, old.msgs_dropped
        self.on_error = old.on_error  # exported as megflow_stream_* while it runs and a while after (observe)

    # -- any thread ----------------------------------------------------------------------------------------
    def open(self) -> None:
        """Start decoding; raises ReaderError at once when a file cannot be opened."""
        self.reader.start()

    def stop(self) -> None:
        """Close the stream's input: queued frames are still processed, then the instance ends."""
        self.stopped = True
        self.stop_asked.set()
        reader = self.reader
        if reader is not None:
            reader.stop()

    def info(self) -> dict:
        reader = self.reader
        counts = self.final if reader is None else {
            "frames": reader.frames_decoded, "dropped": reader.frames_dropped, "corrupt": reader.corrupt,
            "fps": round(reader.fps, 2), "reconnects": reader.reconnects}
        with self._status:
            state, reason = self.state, self.reason
        p50, p95 = self.latency.percentiles()
        return {"id": self.id, "url": self.shown_url, "state": state, "reason": reason, **counts,
                "messages_dropped": self.msgs_dropped, "restarts": self.restarts, "last_error": self.last_error,
                "latency_p50_ms": p50, "latency_p95_ms": p95}

    def restarting(self, delay: float) -> None:
        """Show this ended stream as ``restarting`` (its server starts it again in ``delay`` s)."""
        with self._status:
            self.state = "restarting"
            self.reason = f"{self.last_error} (starting again in {delay:.1f} s)"

    def restart_cancelled(self) -> None:
        """The restart this stream waited for was cancelled (stopped meanwhile): ``stopped``."""
        with self._status:
            self.state, self.reason = "stopped", None

    def given_up(self, why: str) -> None:
        """Its server will not start this failed stream again: ``error`` with ``why`` added."""
        with self._status:
            self.state, self.reason = "error", f"{self.last_error}; {why}"

    def take_messages(self) -> list:
        out = []
        while self.messages:
            out.append(self.messages.popleft())
        return out

    def _on_state(self, state: str, detail) -> None:
        """The reader's state (decode thread). ``reason`` is the detail of an error or of the retry
        in progress; any other state clears it: a stream running again shows no old error. The
        reader's end (finished, stopped) is not the stream's: that comes when its instance ended,
        with every result out (``_wait_done``), so a stream shown ended has all its messages."""
        if state in ("finished", "stopped"):
            return
        with self._status:
            if self.state in ("error", "stopped", "finished"):
                return
            self.state = state
            self.reason = detail if state in ("error", "reconnecting") else None
        if state in ("error", "reconnecting"):
            log.warning("stream %s (%s): %s%s", self.id, self.shown_url, state, f": {detail}" if detail else "")

    # -- hub side ------------------------------------------------------------------------------------------
    def attach(self, path: str) -> None:
        """Create the instance (a hub task; parks until every host built it) and start feeding it."""
        graph = self.dyn.types[0]
        exits = {self.results: self.node.spec.dynamic[self.results_port].cap} if self.results else None
        self.child = self.worker.create_instance(graph, f"{path}#{self.id}", self.dyn, self.node, exits=exits,
                                                 on_failure=self._failed)
        self._fed = Future(self.hub)
        self._collected = Future(self.hub) if self.results else None
        if self.results:
            self.hub.spawn(self._collect, self.child.results(self.results))
        self.hub.spawn(self._wait_done)
        self.hub.spawn(self._feed)

    results_port = "inp"  # the creator's dynamic input that brings an instance's results back

    def _send(self, frame) -> None:
        envelope = Envelope.pack({"data": frame.data}, info={"from_addr": self.id, "partial_id": frame.index})
        self.latency.sent(frame.index, frame.decoded_at)
        self.child.send(envelope)
        self.sent += 1

    def _send_all(self, frames) -> None:
        for frame in frames:
            self._send(frame)
        frames.clear()  # the frames' arrays are the pipeline's now: hold no reference to them

    def _close_input(self) -> None:
        self.child.close()  # a no-op when the instance already ended (it failed)

    def _failed(self, failure) -> None:
        self._fail(failure.summary())

    def _fail(self, reason: str, in_graph: bool = True) -> None:
        """The stream ends with ``reason`` (on the hub, never blocking): its decoding stops."""
        reason = scrub(reason, self.url)  # a node's error may quote the URL it was given
        with self._status:
            first = self.state != "error"
            if first:
                self.state, self.reason = "error", reason
                self.failed_in_graph, self.last_error = in_graph, reason
        if first:
            log.error("stream %s (%s): %s", self.id, self.shown_url, reason)
        if self.reader is not None:
            self.reader.stop(wait=False)

    def _collect(self, port) -> None:
        latency, messages = self.latency, self.messages
        try:
            while True:
                envelopes, _ = port.batch_recv(COLLECT_BATCH, 0)  # what arrived together: one hand-over
                if not envelopes:
                    break
                out = []
                for envelope in envelopes:
                    latency.result(envelope.partial_id)
                    msg = envelope.msg
                    shown = view_frame(msg)
                    if shown is not None:
                        if self.view is not None:
                            self.view.offer(*shown)
                        continue
                    value, text, lossy = encode_message(msg)
                    if lossy:
                        self._warn_lossy(msg)
                    if len(messages) >= self.max_msgs:
                        messages.popleft()
                        self.msgs_dropped += 1
                    messages.append(value)
                    out.append((self.id, time.time(), text))
                envelopes = envelope = msg = shown = None  # hold no frame while waiting for the next
                if out and self.deliver is not None:
                    self.deliver(out)
        finally:
            if self.view is not None:
                self.view.close()
            self._collected.set(None)

    def _warn_lossy(self, msg) -> None:
        """Once per stream: a message held something JSON cannot (an array, bytes, a NaN), shown with str()."""
        if self.warned_type:
            return
        self.warned_type = True
        log.warning("stream %s (%s): its graph sent a %s out that JSON cannot hold whole; what JSON cannot hold "
                    "(arrays, bytes, NaN, ...) is shown with str(): send strings or JSON values (dicts, lists, "
                    "numbers), and rendered frames to a Visualize node", self.id, self.shown_url, type(msg).__name__)

    def _wait_done(self) -> None:
        failures = self.child.done.wait()
        if failures:
            self._fail(failures[0].summary())
        if self._collected is not None:  # results may still cross shared nodes after the instance's nodes ended
            self._collected.wait()
        self._fed.wait()
        with self._status:
            if self.state in ("running", "starting", "reconnecting"):
                self.state, self.reason = "stopped" if self.stopped else "finished", None
        r = self.reader
        self.final = {"frames": r.frames_decoded, "dropped": r.frames_dropped, "corrupt": r.corrupt, "fps": 0.0,
                      "reconnects": r.reconnects}
        # an ended stream keeps only what /list shows: the reader, plan and threads are let go
        self.reader, self.child = None, None
        self.done.set(None)  # not the stream itself: a stream -> future -> stream cycle waits for the
        # cyclic collector (a full collection, on a worker tuned for rare ones), and all it holds with it

    # -- feeder task ---------------------------------------------------------------------------------------
    def _feed(self) -> None:
        reader, hub = self.reader, self.hub
        try:
            while True:
                ready = Future(hub)
                frames = reader.drain(lambda: hub.call_soon_threadsafe(ready.set, None))
                if frames is None:
                    break
                if not frames:
                    ready.wait()
                    continue
                self._send_all(frames)  # may park on credits: backpressure reaches the reader's queue
        except Exception as exc:  # noqa: BLE001 - the stream ends with the reason, the app goes on
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            self._close_input()
            self._fed.set(None)
