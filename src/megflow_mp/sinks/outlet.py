"""An outlet: the spool, the sequence book and the delivery thread behind one sink node.

Every instance of one sink node in a process (the one shared instance of a top-level ``[[nodes]]``
sink, or one instance per stream inside a VideoServer / VideoInput stream subgraph) hands its
messages to the same :class:`Outlet` (:func:`open_outlet`, counted; :meth:`Outlet.release` by the
last one closes it). So one directory, one ``seq`` per stream and one ordered delivery per node.

Contracts
---------
* :meth:`Outlet.put` (the node's ``exec``) gives the message its ``seq``, appends it to the spool
  (:mod:`.log`: a segment log, one ``write`` per message, an ``fdatasync`` too with ``spool_fsync``)
  and returns: it never waits on the destination. The spool is bounded (``spool_max_bytes``): past
  the bound the *oldest* messages are dropped (the newest are what a consumer of alerts wants
  first), counted in ``megflow_sink_dropped_total`` and logged once per burst (a WARNING when the
  first one goes, an INFO with the count when the spool is back under half its bound).
* The delivery thread sends the oldest messages, up to ``batch`` at once (waiting up to
  ``linger_ms`` for a batch to fill; from memory while it keeps up, else read back from the
  segments), and acknowledges them in the spool only once the destination accepted them:
  at-least-once, in order per stream (a batch is sent again whole after a failure, and nothing
  after it goes first).
* A failed send is retried forever, after a wait drawn uniformly from ``[0, min(retry_max,
  retry_min * 2**attempt)]`` (capped exponential backoff, full jitter), each retry counted in
  ``megflow_sink_retries_total``. The first failure of an outage is one WARNING (the destination
  as shown, without secrets, and the exception's type and text), the recovery one INFO; a
  destination that refuses messages (HTTP 4xx) is treated like one that is down.
* Closing (the last instance's input ended) delivers what is left for up to ``drain_timeout``
  seconds; the rest stays in the spool for the next start. Entries of the spool before the
  segment log (one ``.entry`` file each, :mod:`megflow_mp.spool`) are moved into it at the start,
  in their order.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path

from ..observe.catalog import BUCKETS
from ..observe.exectime import Histogram
from ..observe.sampler import unwatch_values, watch_values
from ..spool import SUFFIX as ENTRY_SUFFIX
from ..spool import Spool
from .config import Common
from .contract import SeqBook, encode, make_record
from .log import SegmentLog

log = logging.getLogger("megflow_mp")

_OUTLETS: dict = {}
_CLOSED: dict = {}  # key -> the last closed outlet: a new one carries its counters on
_LOCK = threading.Lock()


def backoff(attempt: int, low: float, high: float, rng=random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (from 0): full jitter over a capped exponential."""
    return rng() * min(high, low * (2 ** min(attempt, 30)))


class Outlet:
    def __init__(self, kind: str, name: str, node_id: str, destination, common: Common, directory: Path):
        self.kind, self.name, self.node_id, self.dest, self.common = kind, name, node_id, destination, common
        self.dir = Path(directory)
        self.spool = SegmentLog(self.dir, max_bytes=common.spool_max_bytes, fsync=common.spool_fsync)
        if any(self.dir.glob(f"*{ENTRY_SUFFIX}")):  # left by a version before the segment log
            Spool(self.dir, limit=1 << 62).deliver(lambda _id, value: self.spool.append(value))
        self.seqs = SeqBook(self.dir, fsync=common.spool_fsync)
        self.delivered = 0
        self.retries = 0
        self.hist = Histogram(BUCKETS["megflow_sink_delivery_seconds"])
        self.users = 0
        self.down: str | None = None  # the error of the outage going on
        self.burst_from: int | None = None  # spool.dropped when the burst of drops began
        self.wake = threading.Condition()
        self.closing = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"megflow-sink-{name}", daemon=True)
        self.thread.start()
        watch_values(self)

    # -- the node's side ------------------------------------------------------------------------------
    def put(self, stream, msg) -> None:
        """Spool one message for ``stream`` (see the module docstring); returns without waiting."""
        record = make_record(self.node_id, stream, self.seqs.take(stream), msg)
        self.spool.append(encode(record))
        if self.spool.dropped and self.burst_from is None:
            self.burst_from = self.spool.dropped - 1
            log.warning("%s %r: the spool is full (%d bytes in %s): the oldest messages are dropped",
                        self.kind, self.name, self.common.spool_max_bytes, self.dir)
        with self.wake:
            self.wake.notify()

    def release(self) -> None:
        with _LOCK:
            self.users -= 1
            if self.users > 0:
                return
            key = (self.kind, self.node_id, str(self.dir))
            _OUTLETS.pop(key, None)
            _CLOSED[key] = self
        self.close()

    def close(self) -> None:
        with self.wake:
            self.closing = True
            self.wake.notify()
        self.thread.join(self.common.drain_timeout)
        self.halt()
        left = len(self.spool)
        if left:
            log.warning("%s %r: %d messages not delivered yet stay spooled in %s for the next start",
                        self.kind, self.name, left, self.dir)
        self.spool.close()
        try:
            self.dest.close()
        except Exception:  # noqa: BLE001 - closing a connection that is gone
            pass
        self.seqs.close()

    def halt(self) -> None:
        """Stop the delivery thread after its current attempt; what it holds stays spooled."""
        self.stopped.set()
        with self.wake:
            self.wake.notify()
        self.thread.join(self.common.timeout + 1)

    # -- the delivery thread --------------------------------------------------------------------------
    def _next_batch(self) -> list | None:
        """The next entries to send, or None when the outlet is closed and drained (or stopped)."""
        batch, linger = self.common.batch, self.common.linger
        with self.wake:
            while not len(self.spool):
                if self.closing or self.stopped.is_set():
                    return None
                self.spool.sync()  # idle: the cursor says what was delivered
                self.wake.wait()
            if linger and len(self.spool) < batch and not self.closing:
                deadline = time.monotonic() + linger
                while len(self.spool) < batch and not self.closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.wake.wait(left)
        return self.spool.peek(batch)

    def _run(self) -> None:
        attempt = 0
        while not self.stopped.is_set():
            batch = self._next_batch()
            if batch is None:
                return
            start, values = batch
            if not values:
                continue
            records = [json.loads(value) for value in values]
            try:
                self.dest.send(records, values)
            except Exception as exc:  # noqa: BLE001 - any failure of the destination: retry
                self.retries += 1
                self._failed(exc)
                if self.stopped.wait(backoff(attempt, self.common.retry_min, self.common.retry_max)):
                    return
                attempt += 1
                continue
            attempt = 0
            self.spool.ack(start + len(values))
            now = time.time()
            for r in records:
                self.hist.observe(max(0.0, now - r["ts"]))
            self.delivered += len(records)
            self._recovered()

    def _failed(self, exc: Exception) -> None:
        if self.down is None:
            self.down = type(exc).__name__
            log.warning("%s %r: %s is not accepting messages (%s: %s); they are spooled in %s until it is back",
                        self.kind, self.name, self.dest.shown, type(exc).__name__, self.dest.explain(exc), self.dir)

    def _recovered(self) -> None:
        if self.down is not None:
            self.down = None
            log.info("%s %r: %s accepts messages again; %d spooled messages to deliver",
                     self.kind, self.name, self.dest.shown, len(self.spool))
        if self.burst_from is not None and self.spool.bytes < self.common.spool_max_bytes // 2:
            log.info("%s %r: %d messages were dropped while the spool was full",
                     self.kind, self.name, self.spool.dropped - self.burst_from)
            self.burst_from = None

    # -- metrics (the sampler's thread) ---------------------------------------------------------------
    def export(self, out) -> None:
        out.counter("megflow_sink_delivered", {}, self.delivered)
        out.counter("megflow_sink_retries", {}, self.retries)
        out.gauge("megflow_sink_spooled_messages", {}, len(self.spool))
        out.counter("megflow_sink_dropped", {}, self.spool.dropped)
        out.hist("megflow_sink_delivery_seconds", {}, self.hist)
        out.extra.setdefault("sinks", []).append(
            {"name": self.name, "kind": self.kind, "to": self.dest.shown, "state": "down" if self.down else "up",
             "error": self.down or ""})


def open_outlet(kind: str, name: str, node_id: str, directory: Path, make_destination, common: Common) -> Outlet:
    """The outlet of sink node ``node_id`` in this process (made on first use, with the destination
    ``make_destination()``); each call must be matched by one :meth:`Outlet.release`."""
    key = (kind, node_id, str(directory))
    with _LOCK:
        outlet = _OUTLETS.get(key)
        if outlet is None:
            outlet = _OUTLETS[key] = Outlet(kind, name, node_id, make_destination(), common, directory)
            before = _CLOSED.pop(key, None)
            if before is not None:  # the stream that used it ended and another began: counters go on
                unwatch_values(before)
                outlet.delivered, outlet.retries = before.delivered, before.retries
                outlet.spool.dropped = before.spool.dropped
                outlet.hist.add(before.hist.counts, before.hist.sum)
        outlet.users += 1
        return outlet
