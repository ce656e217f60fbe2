"""The delivery contract every sink keeps: what a delivered message looks like, and its sequence.

Each message is delivered as the JSON object::

    {"stream": <envelope.from_addr or null>, "seq": <int>, "ts": <float>, "message": <msg>,
     "id": "<node>/<stream>/<seq>"}

* ``stream``: the envelope's ``from_addr`` (a VideoServer / VideoInput stream id, a DynDemux
  address), ``null`` when it has none (an ImageServer request); a value that is not a JSON scalar
  is given as its ``str()``.
* ``seq``: per stream, from 0, one more per message, never reused: the next value of each stream
  is kept in ``seq.json`` in the sink's spool directory, reserved :data:`GAP` at a time, so a
  process killed at any moment continues after the reserved bound (a gap of less than ``GAP``)
  and a clean stop continues without one.
* ``ts``: when the sink took the message (``time.time()``).
* ``message``: the envelope's ``msg`` as sent when it is a dict, list or string (values inside that
  JSON cannot hold, numpy numbers, arrays, become numbers or their ``str()``); anything else its
  ``str()``.
* ``id``: the idempotency key, unique and the same on every retry: ``<node>/<stream>/<seq>`` (the
  node with ``#<replica>`` for a replica other than 0).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

GAP = 1000
SEQ_FILE = "seq.json"


def stream_of(from_addr):
    """The ``stream`` field of an envelope with this ``from_addr``."""
    if from_addr is None or isinstance(from_addr, (str, int, float)) and not isinstance(from_addr, bool):
        return from_addr
    return str(from_addr)


def _plain(value):
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return item()
    return str(value)


def message_of(msg):
    return msg if isinstance(msg, (dict, list, str)) else str(msg)


def make_record(node_id: str, stream, seq: int, msg, ts: float | None = None) -> dict:
    """The delivered object of one message (see the module docstring)."""
    return {"stream": stream, "seq": seq, "ts": time.time() if ts is None else ts, "message": message_of(msg),
            "id": f"{node_id}/{'null' if stream is None else stream}/{seq}"}


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_plain)


def encode(record: dict) -> str:
    """The record as compact JSON (what the spool keeps and the destinations receive)."""
    return _ENCODER.encode(record)


class SeqBook:
    """The next ``seq`` of each stream, persisted in ``<directory>/seq.json`` (thread-safe)."""

    def __init__(self, directory: str | os.PathLike, gap: int = GAP, fsync: bool = False):
        self.path = Path(directory) / SEQ_FILE
        self.gap, self.fsync = gap, fsync
        self.lock = threading.Lock()
        try:
            saved = json.loads(self.path.read_text())
            self.reserved = {str(k): int(v) for k, v in saved.get("next", {}).items()}
        except (OSError, ValueError, AttributeError, TypeError):
            self.reserved = {}
        self.next = dict(self.reserved)  # after a kill: past everything that may have been issued
        self.keys: dict = {}  # (type, stream) -> its key in the table

    def take(self, stream) -> int:
        key = self.keys.get((stream.__class__, stream))
        if key is None:
            key = self.keys[(stream.__class__, stream)] = json.dumps(stream)
        with self.lock:
            n = self.next.get(key, 0)
            self.next[key] = n + 1
            if n + 1 > self.reserved.get(key, 0):
                self.reserved[key] = n + self.gap
                self._write(self.reserved)
            return n

    def close(self) -> None:
        """A clean stop: the next start continues exactly where this one ended."""
        with self.lock:
            self.reserved = dict(self.next)
            self._write(self.next)

    def _write(self, table: dict) -> None:
        tmp = self.path.with_name(f".{SEQ_FILE}.tmp")
        with open(tmp, "w") as f:
            json.dump({"format": "megflow-mp sink seq", "next": table}, f)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.path)
