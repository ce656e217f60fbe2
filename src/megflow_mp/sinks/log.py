"""A sink's spool: an append-only log of records in segment files, and the cursor of what was delivered.

    log = SegmentLog(directory, max_bytes=64 << 20, fsync=False)
    log.append('{"seq": 0}')               # in the kernel (or on disk, fsync=True) before it returns
    start, values = log.peek(100)          # the oldest records not acknowledged yet, left in place
    log.ack(start + len(values))           # delivered: they go

Contracts
---------
* Records are frames ``<length u32><crc u32><utf-8 bytes>`` (the CRC-32 covers the length and the
  bytes) appended to segment files ``<n>.seg`` (``n`` rising, a new one past ``segment_bytes``);
  :meth:`append` is one ``write`` of the frame: when it returns the record survives the process
  being killed (SIGKILL), and with ``fsync=True`` (an ``fdatasync`` per append) a power loss.
* ``cursor.json`` holds the acknowledged position ``{"segment": n, "offset": bytes}``, replaced
  atomically (a temporary file renamed; fsync'd with ``fsync=True``). It is written at most every
  ``cursor_interval`` seconds while acknowledgements come, by :meth:`sync` (the delivery thread
  going idle) and :meth:`close`, and always before a segment is deleted: a segment is deleted once
  every record in it is acknowledged (or dropped). After a kill the records acknowledged since the
  last cursor write are read again: at least once, never lost.
* Opening reads every segment: a record cut short or damaged (a kill during a write, a power loss
  without fsync) ends its segment, which is truncated there (a WARNING with the bytes cut); the
  records before it and the later segments are kept. Records come back in the order of
  :meth:`append`, across reopens.
* ``max_bytes`` bounds the bytes of the records not acknowledged: appending past it drops the
  oldest ones (as if acknowledged), counted in :attr:`dropped`; the newest record is always kept,
  even alone over the bound. On disk there is at most one partly acknowledged segment more.
* The newest records (up to ``memory_bytes``) are also kept in memory: while the reader keeps up,
  :meth:`peek` takes them from there and the disk is only written; behind that, it reads the
  segments (one read per segment, sized from the lengths it holds).
* One owner per directory (a sink's outlet, one per node and process); thread-safe within it.
  :func:`pending` counts the records left in a directory without changing anything (tests, tools).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from pathlib import Path

__all__ = ["SegmentLog", "pending"]

log = logging.getLogger("megflow_mp")

HEAD = struct.Struct("<II")  # length, crc
LEN = struct.Struct("<I")
SUFFIX = ".seg"
CURSOR = "cursor.json"


def _crc(data, n: int) -> int:
    return zlib.crc32(data, zlib.crc32(LEN.pack(n)))


def frame(data: bytes) -> bytes:
    """The frame of one record (see the module docstring)."""
    n = len(data)
    return HEAD.pack(n, _crc(data, n)) + data


def scan(data: bytes, start: int = 0) -> tuple[list[int], int, int]:
    """The lengths of the whole, intact records of a segment's bytes at or after offset ``start``,
    the offset of the first of them (``start`` rounded up to a record) and where the intact ones end."""
    view = memoryview(data)
    sizes, off, first = [], 0, None
    while off + 8 <= len(data):
        n, crc = HEAD.unpack_from(data, off)
        end = off + 8 + n
        if end > len(data) or _crc(view[off + 8:end], n) != crc:
            break
        if off >= start:
            if first is None:
                first = off
            sizes.append(n)
        off = end
    return sizes, off if first is None else first, off


def _segments(directory: Path) -> list[int]:
    return sorted(int(p.name[:-len(SUFFIX)]) for p in directory.glob(f"*{SUFFIX}") if p.name[:-len(SUFFIX)].isdigit())


def _read_cursor(directory: Path) -> tuple[int, int]:
    try:
        c = json.loads((directory / CURSOR).read_text())
        return int(c["segment"]), int(c["offset"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1, 0


def _name(directory: Path, n: int) -> Path:
    return directory / f"{n:020d}{SUFFIX}"


def pending(directory: str | os.PathLike) -> int:
    """How many records of the log in ``directory`` are not acknowledged (read only; a record being
    written is not counted)."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    cseg, coff = _read_cursor(directory)
    count = 0
    for n in _segments(directory):
        if n < cseg:
            continue
        try:
            data = _name(directory, n).read_bytes()
        except FileNotFoundError:
            continue
        count += len(scan(data, coff if n == cseg else 0)[0])
    return count


class _Segment:
    __slots__ = ("number", "path", "size")

    def __init__(self, number: int, path: Path, size: int):
        self.number, self.path, self.size = number, path, size


class SegmentLog:
    """The log of one directory (created when missing); see the module docstring."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int | None = None, fsync: bool = False,
                 segment_bytes: int = 4 << 20, memory_bytes: int = 4 << 20, cursor_interval: float = 0.05):
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"a spool holds at least one byte; max_bytes = {max_bytes}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.fsync = max_bytes, fsync
        self.segment_bytes, self.memory_bytes, self.cursor_interval = segment_bytes, memory_bytes, cursor_interval
        self.dropped = 0
        self.bytes = 0  # bytes of the records not acknowledged
        self._lock = threading.Lock()
        self._segs: list[_Segment] = []  # oldest first; the first holds the read position, the last is written
        self._roff = 0  # the read position: offset of the oldest record not acknowledged in _segs[0]
        self._sizes: deque = deque()  # lengths of the records not acknowledged, oldest first
        self._acked = 0  # the index (in this object's life) of the oldest record not acknowledged
        self._mem: deque = deque()  # (value, length) of the newest records not acknowledged
        self._mem_bytes = 0
        self._wfd: int | None = None  # the segment being written (opened on the first append)
        self._rfile = None  # (number, fd) of the segment last read
        self._dirty = False
        self._cursor_at = 0.0
        self._open()

    # -- opening ----------------------------------------------------------------------------------------
    def _open(self) -> None:
        cseg, coff = _read_cursor(self.dir)
        numbers = _segments(self.dir)
        self._next = max([cseg, *numbers]) + 1
        for n in numbers:
            path = _name(self.dir, n)
            if n < cseg:  # acknowledged whole; the deletion was cut short
                path.unlink(missing_ok=True)
                continue
            data = path.read_bytes()
            sizes, first, end = scan(data, coff if n == cseg else 0)
            if end < len(data):
                log.warning("sink spool %s: %d bytes of %s after its last whole record are cut off (a write cut short)",
                            self.dir, len(data) - end, path.name)
                with open(path, "r+b") as f:
                    f.truncate(end)
            if not self._segs:
                self._roff = first
            self._segs.append(_Segment(n, path, end))
            self._sizes.extend(sizes)
            self.bytes += sum(sizes)
        self._settle()

    # -- writing ----------------------------------------------------------------------------------------
    def _roll(self) -> None:
        if self._wfd is not None:
            if self.fsync:
                os.fsync(self._wfd)
            os.close(self._wfd)
        n = self._next
        self._next += 1
        path = _name(self.dir, n)
        self._wfd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
        if self.fsync:
            _fsync_dir(self.dir)
        if not self._segs:
            self._roff = 0
        self._segs.append(_Segment(n, path, 0))
        self._settle()

    def append(self, value: str) -> None:
        """Write one record (see the module docstring); drops the oldest ones past ``max_bytes``."""
        data = value.encode("utf-8")
        buf = frame(data)
        n = len(data)
        with self._lock:
            if self._wfd is None or self._segs[-1].size >= self.segment_bytes:
                self._roll()
            written = os.write(self._wfd, buf)
            while written < len(buf):  # a short write (a full disk raises instead)
                written += os.write(self._wfd, buf[written:])
            if self.fsync:
                os.fdatasync(self._wfd)
            self._segs[-1].size += len(buf)
            self._sizes.append(n)
            self.bytes += n
            self._mem.append((value, n))
            self._mem_bytes += n
            while self._mem_bytes > self.memory_bytes and len(self._mem) > 1:
                self._mem_bytes -= self._mem.popleft()[1]
            if self.max_bytes is not None and self.bytes > self.max_bytes and len(self._sizes) > 1:
                before = len(self._sizes)
                k, over = 0, self.bytes - self.max_bytes
                while over > 0 and k < before - 1:
                    over -= self._sizes[k]
                    k += 1
                self._advance(k)
                self.dropped += k

    # -- reading ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._sizes)

    def peek(self, n: int) -> tuple[int, list[str]]:
        """``(index, values)``: up to ``n`` of the oldest records not acknowledged, the first of them
        numbered ``index`` (for :meth:`ack`); they stay until acknowledged."""
        with self._lock:
            start, waiting = self._acked, len(self._sizes)
            on_disk_only = waiting - len(self._mem)
            if on_disk_only <= 0:
                return start, [v for v, _ in _head(self._mem, n)]
            return start, self._read(min(n, on_disk_only))

    def _read(self, k: int) -> list[str]:
        """The oldest ``k`` records from the segments: one read per segment they lie in."""
        out, sizes, i, off = [], self._sizes, 0, self._roff
        for seg in self._segs:
            if i >= k:
                break
            first, want = i, 0
            while i < k and off + want + 8 + sizes[i] <= seg.size:
                want += 8 + sizes[i]
                i += 1
            if want:
                data = os.pread(self._reader(seg), want, off)
                pos = 0
                for j in range(first, i):
                    out.append(data[pos + 8:pos + 8 + sizes[j]].decode("utf-8", "replace"))
                    pos += 8 + sizes[j]
            off = 0
        return out

    def _reader(self, seg: _Segment) -> int:
        if self._rfile is None or self._rfile[0] != seg.number:
            self._close_reader()
            self._rfile = (seg.number, os.open(seg.path, os.O_RDONLY))
        return self._rfile[1]

    def ack(self, upto: int) -> None:
        """The records numbered below ``upto`` are delivered (those already dropped are skipped)."""
        with self._lock:
            k = min(upto - self._acked, len(self._sizes))
            if k > 0:
                self._advance(k)

    def _advance(self, k: int) -> None:
        """The oldest ``k`` records are done (the lock is held)."""
        sizes, step = self._sizes, 0
        for _ in range(k):
            size = sizes.popleft()
            self.bytes -= size
            step += 8 + size
        self._acked += k
        self._roff += step
        extra = len(self._mem) - len(sizes)
        for _ in range(max(0, extra)):
            self._mem_bytes -= self._mem.popleft()[1]
        self._dirty = True
        self._settle()
        if self._dirty and time.monotonic() - self._cursor_at >= self.cursor_interval:
            self._write_cursor()

    def _settle(self) -> None:
        """Delete the segments wholly behind the read position (the cursor is written first)."""
        segs = self._segs
        while len(segs) > 1 and self._roff >= segs[0].size:
            self._roff -= segs[0].size
            gone = segs.pop(0)
            self._dirty = True
            self._write_cursor()
            if self._rfile is not None and self._rfile[0] == gone.number:
                self._close_reader()
            gone.path.unlink(missing_ok=True)

    # -- the cursor -------------------------------------------------------------------------------------
    def _write_cursor(self) -> None:
        if not self._segs:
            return
        tmp = self.dir / f".{CURSOR}.tmp"
        with open(tmp, "w") as f:
            json.dump({"segment": self._segs[0].number, "offset": self._roff}, f)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.dir / CURSOR)
        if self.fsync:
            _fsync_dir(self.dir)
        self._dirty = False
        self._cursor_at = time.monotonic()

    def sync(self) -> None:
        """Write the cursor now if acknowledgements are not in it yet."""
        with self._lock:
            if self._dirty:
                self._write_cursor()

    def close(self) -> None:
        """Write the cursor and close the files; an empty log leaves no segment behind."""
        with self._lock:
            if self._wfd is not None:
                if self.fsync:
                    os.fsync(self._wfd)
                os.close(self._wfd)
                self._wfd = None
            self._close_reader()
            if not self._sizes:
                for seg in self._segs:  # the segments first: a cursor without them means nothing pending
                    seg.path.unlink(missing_ok=True)
                self._segs = []
                (self.dir / CURSOR).unlink(missing_ok=True)
            elif self._dirty:
                self._write_cursor()

    def _close_reader(self) -> None:
        if self._rfile is not None:
            os.close(self._rfile[1])
            self._rfile = None


def _head(items: deque, n: int) -> list:
    if n >= len(items):
        return list(items)
    out = []
    for item in items:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
