"""The messages of a VideoServer's streams as they are delivered: JSON, numbered, kept a while, fanned out.

A stream's *message* is what its subgraph sends out of the output wired back to the VideoServer
(rendered frames for ``/view`` are not messages: :mod:`megflow_mp.live`). Strings stay as they are;
dicts, lists, numbers, booleans and None are JSON values and stay objects (:func:`encode_message`);
a value JSON cannot hold (a numpy array, bytes, a NaN) is shown with ``str()``, and its stream
warns once. Each delivered message has one shape, shared by every consumer (``/streams/{id}/events``,
``/events``, the result sinks)::

    {"stream": "gate", "seq": 41, "ts": 1765142400.123, "message": <object or string>}

``stream`` is the stream's id, ``seq`` its number within the stream (0, 1, 2, ... without holes
while the app runs), ``ts`` the wall-clock time (seconds) when it left the subgraph, taken by the
runner that collected it.

Who does what:

* A runner (any replica of the VideoServer) collects a stream's messages on its hub
  (:meth:`Stream._collect <.stream.Stream._collect>`), encodes each once and hands batches of
  ``(stream id, ts, message JSON text)`` to replica 0 (in process, or one worker call per batch).
* Replica 0 owns one :class:`MessageLog` per VideoServer: it numbers the messages (``seq`` per
  stream, and a *cursor* over all streams, the ``id`` of ``/events``), keeps the last ``keep`` of each
  stream and the last ``keep_all`` of all in rings, and wakes the consumers. Numbering happens on
  replica 0's hub only (:meth:`MessageLog.append_many`), so a stream started again (after a
  failure, on another runner) continues its numbers.
* The numbers survive the app (:class:`SeqFile`, ``<state dir>/<node>.seqs.json``): the file holds,
  per stream and for the cursor, a number that nothing handed out has reached (a reservation
  ``block`` ahead, renewed by a writer thread when half of it is used); a clean stop writes the
  exact next numbers. After a SIGKILL the numbers continue above the reservation: some are skipped,
  none is used twice.
* A consumer (:class:`Subscriber`) holds only a cursor into the rings: appending never waits for
  a consumer, and a consumer slower than the messages falls behind the ring's start, is told how
  many it missed (a gap) and continues from the oldest message kept.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import Counter, OrderedDict
from pathlib import Path

from .state import write_json_atomic

log = logging.getLogger("megflow_mp")
ALL = "*"  # the key of the cursor over every stream (no stream id has a '*')
FORMAT = "megflow-mp message numbers"
VERSION = 1
DATA = '{"stream":%s,"seq":%d,"ts":%s,"message":%s}'


def encode_message(msg) -> tuple[object, str, bool]:
    """``(value, JSON text of value, lossy)`` of a message: a string or a JSON value as it is; what
    JSON cannot hold is replaced by its ``str()`` (``lossy``: the caller warns)."""
    if type(msg) is str:
        return msg, json.dumps(msg, ensure_ascii=False), False
    try:
        return msg, json.dumps(msg, ensure_ascii=False, allow_nan=False, separators=(",", ":")), False
    except (TypeError, ValueError):
        value = _plain(msg)
        return value, json.dumps(value, ensure_ascii=False, separators=(",", ":")), True


def _plain(value):
    """``value`` with what JSON cannot hold replaced by its ``str()``."""
    if value is None or type(value) in (str, bool, int):
        return value
    if isinstance(value, (str, bool, int)):  # subclasses (an IntEnum): their plain value
        return (str if isinstance(value, str) else bool if isinstance(value, bool) else int)(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def delivered(sid, seq: int, ts: float, text: str) -> str:
    """The JSON text of a delivered message (``text``: the message's own JSON text)."""
    return DATA % (json.dumps(sid), seq, repr(round(ts, 6)), text)


class Record:
    """One delivered message: ``sid``, ``seq``, ``cursor`` (its number over all streams) and ``data``
    (the JSON text of the delivered shape)."""

    __slots__ = ("sid", "seq", "cursor", "data")

    def __init__(self, sid, seq: int, cursor: int, data: str):
        self.sid, self.seq, self.cursor, self.data = sid, seq, cursor, data

    def message(self) -> dict:
        """The delivered message as an object."""
        return json.loads(self.data)


class Ring:
    """The last ``cap`` records numbered ``base``, ``base + 1``, ... (``end``: the next number)."""

    __slots__ = ("cap", "base", "end", "buf")

    def __init__(self, cap: int, base: int):
        self.cap, self.base, self.end, self.buf = cap, base, base, []

    @property
    def first(self) -> int:
        return max(self.base, self.end - self.cap)

    def put(self, record: Record) -> None:
        if len(self.buf) < self.cap:
            self.buf.append(record)
        else:
            self.buf[(self.end - self.base) % self.cap] = record
        self.end += 1

    def get(self, n: int) -> Record:
        return self.buf[(n - self.base) % self.cap]


class SeqFile:
    """The numbers of one VideoServer that survive the app: ``{key: n}`` (a stream id, or :data:`ALL`)
    where no number handed out under ``key`` has reached ``n``. Thread-safe; a failing write is one
    warning, and numbering goes on (they may then repeat after a SIGKILL)."""

    def __init__(self, path: Path, node: str, block: int = 1000, block_all: int = 10000):
        self.path, self.node = Path(path), node
        self.block, self.block_all = block, block_all
        self.cond = threading.Condition()
        self.write_lock = threading.Lock()
        self.durable: dict = {}  # what the file says
        self.target: dict = {}  # what the writer is asked to write
        self.thread: threading.Thread | None = None
        self.failing = False

    def load(self) -> dict:
        """``{key: next number}`` from the file ({} when there is none; a bad one is one warning)."""
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
                raise ValueError("not a megflow-mp message numbers file")
            if data.get("node") != self.node:
                raise ValueError(f"it belongs to node {data.get('node')!r}")
            numbers = {ALL: int(data["cursor"])}
            numbers.update({sid: int(n) for sid, n in data["streams"]})
        except FileNotFoundError:
            numbers = {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("message numbers file %s is not usable (%s): numbers start again at 0", self.path, exc)
            numbers = {}
        with self.cond:
            self.durable, self.target = dict(numbers), dict(numbers)
        return numbers

    def reserve(self, key, n: int) -> None:
        """Number ``n`` is about to be handed out under ``key``: returns once the file holds more than
        ``n``: at once, except for a key's first number in this run and when the writer fell half a
        block behind (then it waits for one write: an fsync, on replica 0's hub)."""
        block = self.block_all if key == ALL else self.block
        with self.cond:
            if n + block // 2 >= self.target.get(key, 0):
                self.target[key] = n + block
                if self.thread is None:
                    self.thread = threading.Thread(target=self._run, name="megflow-seqs", daemon=True)
                    self.thread.start()
                self.cond.notify_all()
            while n >= self.durable.get(key, 0) and not self.failing:
                self.cond.wait()

    def forget(self, key) -> None:
        """``key`` needs no number any more: it leaves the file at its next write."""
        with self.cond:
            self.target.pop(key, None)
            self.durable.pop(key, None)

    def close(self, exact: dict) -> None:
        """A clean stop: write the exact next numbers ``exact`` (later numbers are reserved again)."""
        with self.write_lock:
            with self.cond:
                numbers = {**self.durable, **exact}
            if self._write(numbers):
                with self.cond:
                    self.durable.update(exact)
                    self.target.update(exact)
                    self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                while self.target == self.durable:
                    self.cond.wait()
                numbers = dict(self.target)
            with self.write_lock:  # the file and ``durable`` change together (close() writes too)
                ok = self._write(numbers)
                with self.cond:
                    if ok:
                        for key, n in numbers.items():
                            if key in self.target:  # not forgotten while it was written
                                self.durable[key] = max(self.durable.get(key, 0), n)
                    self.failing = not ok
                    self.cond.notify_all()
            if not ok:
                with self.cond:
                    self.cond.wait(5.0)  # a failing directory is tried again every 5 s while numbers are wanted

    def _write(self, numbers: dict) -> bool:
        data = {"format": FORMAT, "version": VERSION, "node": self.node, "cursor": numbers.get(ALL, 0),
                "streams": [[k, n] for k, n in numbers.items() if k != ALL]}
        try:
            write_json_atomic(self.path, data)
            return True
        except OSError as exc:
            if not self.failing:
                log.warning("message numbers file %s cannot be written (%s): after a restart, message numbers "
                            "may repeat", self.path, exc.strerror or exc)
            return False


class Subscriber:
    """One consumer: ``sid`` (a stream id, or :data:`ALL`) and ``after`` (the last number it has:
    a ``seq``, or a cursor for :data:`ALL`). ``loop``/``event``: where and how it is woken."""

    def __init__(self, sid, after: int | None, loop, event):
        self.sid, self.after, self.loop, self.event = sid, after, loop, event
        self.waiting = False


class Gap:
    """Messages a consumer will not get: the numbers ``after + 1`` .. ``next - 1`` (``missed`` of them;
    None when ``after`` is a number this log never gave: another server's, or a lost state dir)."""

    def __init__(self, sid, after: int, next_: int, missed: int | None):
        self.sid, self.after, self.next, self.missed = sid, after, next_, missed

    def data(self) -> str:
        return json.dumps({"stream": None if self.sid == ALL else self.sid, "last_event_id": self.after,
                           "next": self.next, "missed": self.missed}, separators=(",", ":"))


class MessageLog:
    """The delivered messages of one VideoServer (see the module docstring). ``append_many`` and
    ``close`` run on replica 0's hub; ``subscribe``/``read``/``unsubscribe`` on any thread (the front
    door's event loop); ``listen`` callbacks run on the hub and must not block."""

    def __init__(self, seqs: SeqFile | None = None, keep: int = 10000, keep_all: int = 100000,
                 max_streams: int = 1000):
        numbers = seqs.load() if seqs is not None else {}
        self.seqs, self.keep, self.max_streams = seqs, keep, max_streams
        self.cursor = numbers.pop(ALL, 0)
        self.next: dict = numbers  # per stream id: its next seq
        self.rings: OrderedDict = OrderedDict()  # the streams' rings, the least recently used first
        self.all = Ring(keep_all, self.cursor)
        self.lock = threading.Lock()
        self.subs: dict = {}  # stream id or ALL -> set of Subscribers
        self.listeners: list = []
        self.closed = False

    def append_many(self, batch) -> list[Record]:
        """Number and keep ``batch``: ``[(stream id, ts, message JSON text)]`` (the hub)."""
        if not batch:
            return []
        if self.seqs is not None:
            for sid, k in Counter(item[0] for item in batch).items():
                self.seqs.reserve(sid, self.next.get(sid, 0) + k - 1)
            self.seqs.reserve(ALL, self.cursor + len(batch) - 1)
        records, touched = [], set()
        with self.lock:
            for sid, ts, text in batch:
                seq = self.next.get(sid, 0)
                self.next[sid] = seq + 1
                record = Record(sid, seq, self.cursor, delivered(sid, seq, ts, text))
                self.cursor += 1
                ring = self.rings.get(sid)
                if ring is None:
                    ring = self.rings[sid] = Ring(self.keep, seq)
                if sid not in touched:
                    touched.add(sid)
                    self.rings.move_to_end(sid)
                ring.put(record)
                self.all.put(record)
                records.append(record)
            while len(self.rings) > self.max_streams:
                self.rings.popitem(last=False)
            wake = [s for key in (*touched, ALL) for s in self.subs.get(key, ()) if s.waiting]
            for sub in wake:
                sub.waiting = False
        for sub in wake:
            sub.loop.call_soon_threadsafe(sub.event.set)
        for listener in self.listeners:
            listener(records)
        return records

    def forget(self, sid) -> None:
        """Stream ``sid`` left the server's memory (ended, past ``history``): its ring goes (``/events``
        keeps its messages a while longer); the next number of an integer id goes too (MegFlow's ids
        are never given twice in a run), a name's stays (the name may be started again)."""
        with self.lock:
            self.rings.pop(sid, None)
            if isinstance(sid, int):
                self.next.pop(sid, None)
        if isinstance(sid, int) and self.seqs is not None:
            self.seqs.forget(sid)

    def listen(self, fn) -> None:
        """Call ``fn(records)`` with every batch appended from now on (on the hub: never block)."""
        self.listeners.append(fn)

    def knows(self, sid) -> bool:
        """Whether stream ``sid`` ever sent a message (in this run or, by its numbers, an earlier one)."""
        return sid in self.next

    def subscribe(self, sid, after: int | None, loop, event) -> Subscriber:
        """A consumer of stream ``sid`` (or :data:`ALL`) that has everything up to ``after``
        (None: from the next message on)."""
        sub = Subscriber(sid, after, loop, event)
        with self.lock:
            if after is None:
                sub.after = self._end(sid) - 1
            self.subs.setdefault(sid, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self.lock:
            subs = self.subs.get(sub.sid)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.subs[sub.sid]

    def _end(self, sid) -> int:
        return self.cursor if sid == ALL else self.next.get(sid, 0)

    def read(self, sub: Subscriber, limit: int) -> tuple[Gap | None, list[Record], bool]:
        """``(gap, records, closed)``: what ``sub`` misses (None: nothing), then up to ``limit``
        records after ``sub.after`` (its cursor moves past them). With none, ``sub`` is marked waiting
        (its event is cleared, and set by the next append): call from ``sub``'s loop."""
        with self.lock:
            end = self._end(sub.sid)
            ring = self.all if sub.sid == ALL else self.rings.get(sub.sid)
            first = ring.first if ring is not None else end
            gap = None
            if sub.after >= end:  # a number this log never gave: resend what is kept
                gap = Gap(sub.sid, sub.after, first, None)
                sub.after = first - 1
            elif sub.after + 1 < first:
                gap = Gap(sub.sid, sub.after, first, first - sub.after - 1)
                sub.after = first - 1
            stop = min(end, sub.after + 1 + limit)
            records = [ring.get(n) for n in range(sub.after + 1, stop)] if ring is not None else []
            if records:
                sub.after = stop - 1
            elif gap is None:
                sub.waiting = True
                sub.event.clear()
            return gap, records, self.closed

    def close(self) -> None:
        """The server stops (the hub): every consumer gets what is kept, then its end; the exact
        next numbers are written."""
        with self.lock:
            self.closed = True
            subs = [s for group in self.subs.values() for s in group]
            exact = {**self.next, ALL: self.cursor}
        for sub in subs:
            sub.loop.call_soon_threadsafe(sub.event.set)
        if self.seqs is not None:
            self.seqs.close(exact)
