"""A bounded spool on disk: values that must reach an outside store (redis, a web hook) survive the
store being down and the process being killed, and are handed over in order when it is back.

    spool = Spool(spool_dir() / "alerts")
    spool.append("one alert")                      # on disk (fsync'd) before it returns
    spool.deliver(lambda entry_id, value: ...)     # oldest first; stops at the first failure

Contracts
---------
* One file per entry, ``<ns>-<pid>-<n>.entry``, written to a temporary name, fsync'd, renamed, and
  the directory fsync'd: an entry :meth:`append` returned for is on disk whatever happens next
  (SIGKILL, power loss); a half-written one is never seen (temporary names are ignored and swept).
* The entry's id (its file name without ``.entry``) is unique across processes and restarts and
  sorts in the order of :meth:`append`; it is what :meth:`deliver` gives the sender, which makes
  delivery idempotent when the store records it (a redis ``SADD`` of delivered ids in the same
  script as the push): an entry is removed only after the sender returned, so a process killed in
  between sends it again at the next start, and the store sees the same id twice.
* At most ``limit`` entries: appending one more removes the oldest ones, counted in :attr:`dropped`.
* Several processes may share a directory (replicas of one node): each delivers every entry it
  finds, oldest first; an entry another one removed meanwhile is skipped.
* ``fsync=False``: an appended entry survives the process being killed (SIGKILL: the kernel has
  the write) but not a power loss; appends cost a few tens of microseconds instead of two fsyncs.
* No dependency on any store: the sender is a function.
* Made for a low volume (a file per entry, the directory listed per append): the sinks'
  spool, many messages a second, is a segment log instead (:mod:`megflow_mp.sinks.log`).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from typing import Callable

__all__ = ["Spool", "spool_dir"]

SUFFIX = ".entry"


def spool_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where spools live: ``explicit`` when given, else ``$XDG_STATE_HOME/megflow-mp/spool`` when that
    variable is set, else ``.megflow-mp/spool`` under the working directory."""
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME")
    return Path(state) / "megflow-mp" / "spool" if state else Path.cwd() / ".megflow-mp" / "spool"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The entries of one directory (created when missing); see the module docstring."""

    def __init__(self, directory: str | os.PathLike, limit: int = 1000, fsync: bool = True):
        if limit < 1:
            raise ValueError(f"a spool holds at least one entry; limit = {limit}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.limit, self.fsync = limit, fsync
        self.dropped = 0
        self._seq = itertools.count()
        self._lock = threading.Lock()
        for stale in self.dir.glob(".tmp-*"):  # an append cut short by a kill: never renamed, never seen
            try:
                if stale.stat().st_mtime < time.time() - 60:
                    stale.unlink()
            except OSError:
                pass

    def _listed(self) -> list[str]:
        return sorted(name[:-len(SUFFIX)] for name in os.listdir(self.dir) if name.endswith(SUFFIX))

    def ids(self) -> list[str]:
        """The ids held now, oldest first."""
        return self._listed()

    def __len__(self) -> int:
        return len(self.ids())

    def values(self) -> list[str]:
        """The values held now, oldest first (an entry removed meanwhile is left out)."""
        out = []
        for entry_id in self.ids():
            value = self._read(entry_id)
            if value is not None:
                out.append(value)
        return out

    def append(self, value: str) -> str:
        """Write ``value`` durably; returns its id. Drops the oldest entries beyond ``limit``."""
        data = value.encode("utf-8")
        with self._lock:
            entry_id = f"{time.time_ns():020d}-{os.getpid():07d}-{next(self._seq):09d}"
            tmp = self.dir / f".tmp-{entry_id}"
            with open(tmp, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.rename(tmp, self.dir / f"{entry_id}{SUFFIX}")
            if self.fsync:
                _fsync_dir(self.dir)
            ids = self._listed()
            for old in ids[:max(0, len(ids) - self.limit)]:
                if self._remove(old):
                    self.dropped += 1
            return entry_id

    def remove(self, ids) -> None:
        """Remove the entries ``ids`` (delivered); an id no longer held is skipped."""
        with self._lock:
            for entry_id in ids:
                self._remove(entry_id)

    def deliver(self, send: Callable[[str, str], None]) -> int:
        """``send(id, value)`` for each entry, oldest first, removing each after ``send`` returned;
        stops at the first exception, which propagates (that entry and the later ones stay).
        Returns how many were sent."""
        sent = 0
        for entry_id in self.ids():
            value = self._read(entry_id)
            if value is None:  # delivered by another process meanwhile
                continue
            send(entry_id, value)
            self.remove([entry_id])
            sent += 1
        return sent

    def _read(self, entry_id: str) -> str | None:
        try:
            return (self.dir / f"{entry_id}{SUFFIX}").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _remove(self, entry_id: str) -> bool:
        try:
            (self.dir / f"{entry_id}{SUFFIX}").unlink()
            return True
        except FileNotFoundError:
            return False
