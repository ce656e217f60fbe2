"""A worker's sampler: once every ``interval`` seconds, a snapshot of the process's metrics on disk.

Started by :func:`watch_worker` in each worker process (nothing runs when metrics are off). It
runs on a thread of its own, so a node that never yields (a source in a tight loop) is still
sampled, and reads what the runtime keeps anyway: the hot-path totals of :data:`.counters.COUNTS`,
the node instances' input queues, the arena's use, the streams and front doors registered here.

The snapshot is ``<run dir>/proc-<index>.json`` (see :mod:`.snapshot`), replaced atomically
(written aside, then renamed), read by whichever process serves ``/metrics``. The run directory
is created by the supervisor once its workers are forked: until it exists, writes are skipped.

A restarted worker (``restart = N``) finds the snapshot of the process it replaces: it counts one
restart more and carries that process's counters on, so counters never go back (a second or less
of counts of the killed process is lost).

An ended stream stays in the snapshot for ``retention`` seconds (:mod:`.settings`), then its series
are gone: label sets stay bounded however many streams a server ran.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import NamedTuple

from . import snapshot
from .catalog import BY_NAME, BUCKETS, STREAM_METRICS
from .counters import COUNTS
from .exectime import ExecProbe, Histogram
from .settings import SETTINGS, run_dir

log = logging.getLogger("megflow_mp")
SAMPLER = None  # this process's Sampler, when metrics are on
EXPORTERS: list = []  # objects whose export(builder) adds series of this process (watch_values)


class StreamValues(NamedTuple):
    """One stream's exported values (a tuple: an ended stream's are kept for ``retention`` seconds)."""

    id: int | str
    url: str  # shown_url: secrets as *** (the snapshot's extras reach /dashboard/state)
    state: str
    frames: int
    sent: int
    dropped: int
    corrupt: int
    fps: float
    reconnects: int
    decode: float
    viewers: int
    live: bool
    latency: Histogram | None  # frame age when its result left the stream's subgraph (a copy once ended)
    shown: dict  # what the dashboard shows besides the series: p50/p95 latency (ms), restarts


class StreamEntry:
    """What the sampler keeps of one stream: the stream while it runs; once it is seen ended, only
    its final :class:`StreamValues` (``final``) and when it ended. An ended stream's series stay
    exported for ``retention`` seconds, but the stream itself (its messages, live channel, futures)
    is let go at once: a server that starts many streams keeps no more of them here than numbers."""

    __slots__ = ("stream", "decode", "ended_at", "final")

    def __init__(self, stream):
        self.stream, self.decode, self.ended_at, self.final = stream, 0.0, None, None


def _caps(inputs) -> int:
    """Sum of ``cap`` over a node spec's inputs (``{port: InSpec | {tag: InSpec} | None}``)."""
    total = 0
    for spec in (inputs or {}).values():
        if isinstance(spec, dict):
            total += _caps(spec)
        elif spec is not None:
            total += int(getattr(spec, "cap", 0))
    return total


class Sampler:
    def __init__(self, worker, directory, interval: float, retention: float):
        self.worker, self.dir = worker, directory
        self.interval, self.retention = interval, retention
        self.index = worker.index
        self.node, self.replica = worker.app.procs[self.index]
        self.path = directory / f"proc-{self.index}.json"
        self.exec_hist = Histogram(BUCKETS["megflow_node_exec_seconds"])
        self.probes: dict[int, ExecProbe] = {}
        self.streams: list[StreamEntry] = []
        self.http: list = []  # HttpStats of the front doors in this process
        self.lock = threading.Lock()  # guards the two lists above (HTTP threads add to them)
        self.base, self.restarts = self._carried()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="megflow-metrics", daemon=True)

    def _carried(self) -> tuple[dict, int]:
        """Counters of the process this one replaces (a restart), else nothing."""
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}, 0
        if old.get("pid") == os.getpid():
            return {}, 0
        base = {}
        for name, labels, value in old.get("series", []):
            if BY_NAME[name].kind == "counter" and name not in STREAM_METRICS:
                base[snapshot.key(name, labels)] = value
        for name, labels, counts, total in old.get("hists", []):
            if name not in STREAM_METRICS:
                base[snapshot.key(name, labels)] = (counts, total)
        return base, int(old.get("restarts", 0)) + 1

    # -- registration (any thread) ---------------------------------------------------------------------
    def add_stream(self, stream) -> None:
        """Export ``stream``; it replaces an ended stream of the same id (one restarted after a failure:
        its counters start again from 0, which Prometheus reads as a counter reset)."""
        with self.lock:
            self.streams = [e for e in self.streams if e.ended_at is None or e.final.id != stream.id]
            self.streams.append(StreamEntry(stream))

    def add_http(self, stats) -> None:
        with self.lock:
            self.http.append(stats)

    # -- sampling (its thread) ---------------------------------------------------------------------------
    def start(self) -> None:
        COUNTS.reset()
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while True:
            try:
                self.write()
            except Exception:  # noqa: BLE001 - metrics never take a worker down
                log.exception("metrics of worker %d: snapshot failed", self.index)
            if self._stop.wait(self.interval):
                return

    def write(self) -> None:
        if not self.dir.is_dir():
            return  # the supervisor has not created it yet, or removed it (the run ends)
        data = json.dumps(self.collect(), separators=(",", ":"))
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(data)
        os.replace(tmp, self.path)

    def collect(self) -> dict:
        out = snapshot.Builder(self.base)
        nodes = [n for group in list(self.worker.nodes.values()) for n in list(group)]
        live = [n for n in nodes if not n.ended]
        for n in live:
            probe = self.probes.get(id(n))
            if probe is None or probe.node is not n:
                probe = self.probes[id(n)] = ExecProbe(n, self.exec_hist)
            probe.refill()
        alive = {id(n) for n in live}
        for k in [k for k in self.probes if k not in alive]:
            del self.probes[k]
        out.counter("megflow_node_envelopes_in", {}, COUNTS.received)
        out.counter("megflow_node_envelopes_out", {}, COUNTS.sent)
        out.counter("megflow_node_backpressure_seconds", {}, COUNTS.blocked)
        out.counter("megflow_node_errors", {}, COUNTS.errors)
        out.gauge("megflow_node_restarts", {}, self.restarts)  # carried by hand: already a total
        out.gauge("megflow_node_queue_depth", {}, sum(len(i.queue) for n in live for i in n.inboxes))
        out.gauge("megflow_node_queue_capacity", {}, sum(_caps(getattr(n.spec, "inputs", None)) for n in live))
        out.gauge("megflow_node_instances", {}, len(live))
        out.hist("megflow_node_exec_seconds", {}, self.exec_hist)
        arena = getattr(self.worker, "arena", None)
        if arena is not None:
            use = arena.in_use()
            out.gauge("megflow_shm_mapped_bytes", {}, use["bytes"])
            out.gauge("megflow_shm_held_bytes", {}, use["held"])
        self._streams(out)
        with self.lock:
            http = list(self.http)
        for stats in http:
            stats.export(out)
        for values in list(EXPORTERS):
            values.export(out)
        return {"pid": os.getpid(), "proc": self.index, "node": self.node, "replica": self.replica,
                "time": time.time(), "restarts": self.restarts, **out.result()}

    def _streams(self, out) -> None:
        now = time.monotonic()
        with self.lock:
            entries = list(self.streams)
        keep = []
        for e in entries:
            if e.ended_at is None:
                s = e.stream
                ended = s.done.done  # before its values: an ended stream's info is final
                values = self._values(e, s)
                if ended:
                    e.ended_at, e.final, e.stream = now, values, None
            else:
                values = e.final
            if now - (e.ended_at or now) > self.retention:
                continue  # its series are gone from now on
            keep.append(e)
            self._export(out, values)
        with self.lock:
            dropped = {id(e) for e in entries} - {id(e) for e in keep}
            self.streams = [e for e in self.streams if id(e) not in dropped]

    @staticmethod
    def _values(e: StreamEntry, s) -> StreamValues:
        """The exported values of stream ``s`` now."""
        info = s.info()
        reader = s.reader
        if reader is not None:
            e.decode = getattr(reader, "decode_seconds", e.decode)
        view = getattr(s, "view", None)
        latency = getattr(s, "latency", None)
        hist = None
        if latency is not None:
            hist = Histogram(latency.hist.bounds)
            hist.add(latency.hist.counts, latency.hist.sum)
        return StreamValues(s.id, s.shown_url, info["state"], info["frames"], getattr(s, "sent", 0), info["dropped"],
                            info.get("corrupt", 0), info["fps"], info["reconnects"], e.decode,
                            view.stats()["viewers"] if view is not None else 0, view is not None, hist,
                            {k: info.get(k) for k in ("latency_p50_ms", "latency_p95_ms", "restarts")})

    @staticmethod
    def _export(out, v: StreamValues) -> None:
        labels = {"stream": str(v.id)}
        out.gauge("megflow_stream_state", {**labels, "state": v.state}, 1)
        out.counter("megflow_stream_frames_decoded", labels, v.frames)
        out.counter("megflow_stream_frames_sent", labels, v.sent)
        out.counter("megflow_stream_frames_dropped", labels, v.dropped)
        out.counter("megflow_stream_frames_corrupt", labels, v.corrupt)
        out.gauge("megflow_stream_fps", labels, v.fps)
        out.counter("megflow_stream_reconnects", labels, v.reconnects)
        out.counter("megflow_stream_decode_seconds", labels, v.decode)
        out.gauge("megflow_stream_viewers", labels, v.viewers)
        if v.latency is not None:
            out.hist("megflow_stream_latency_seconds", labels, v.latency)
        out.extra.setdefault("streams", []).append({"id": v.id, "url": v.url, "live": v.live, **v.shown})


def watch_worker(worker) -> Sampler | None:
    """Start sampling this worker process (in the forked child, once its Worker exists)."""
    global SAMPLER
    if not SETTINGS.enabled:
        return None
    run_id = getattr(worker, "run_id", None) or worker.transport.run_id
    SAMPLER = Sampler(worker, run_dir(run_id), SETTINGS.interval, SETTINGS.retention)
    SAMPLER.start()
    return SAMPLER


def watch_values(values) -> None:
    """Export ``values`` from this process: each snapshot calls ``values.export(builder)`` (a
    :class:`.snapshot.Builder`: ``counter``, ``gauge``, ``hist``, ``extra``), whose series must be
    declared in :mod:`.catalog`; the process's ``node`` and ``replica`` labels are added. A node
    calls it from its constructor or ``exec`` (before or after the sampler started: both work);
    :func:`unwatch_values` stops it. Used by the sinks (:mod:`megflow_mp.sinks`)."""
    if values not in EXPORTERS:
        EXPORTERS.append(values)


def unwatch_values(values) -> None:
    if values in EXPORTERS:
        EXPORTERS.remove(values)


def watch_stream(stream) -> None:
    """A video stream of this process: exported while it runs and ``retention`` seconds after."""
    if SAMPLER is not None:
        SAMPLER.add_stream(stream)
