"""Per-process shared-memory arena: memfd segments used as rings of reference-counted blocks.

Contracts
---------
* Every process of an app has an index ``0..nprocs-1`` and exactly one :class:`Arena`. Its own memory
  is a list of *segments*: anonymous ``memfd`` files (never ``/dev/shm`` names), so the kernel frees
  a segment when the last process holding a mapping or an fd of it exits, even after SIGKILL.
  Segments are created lazily, never shrunk and never unmapped while the arena lives.
* A segment is a ring of variable-size *blocks*, allocated at its head. The head wraps to the start
  as soon as the free space there is at least as large as the live span, so a ring with few blocks in
  flight (a video stream's frames) cycles through a small, already mapped, cache-warm part of it.
  A block is a header followed by a 64-byte aligned payload. The header holds the payload size and
  two int64 vectors of length ``nprocs``: ``added[p]`` and ``dropped[p]``. Cell ``p`` is written
  only by process ``p`` (single writer, plain aligned 8-byte stores, no atomics). A block is free
  when ``sum(dropped) == sum(added)``.
* Rule every process follows: increment ``added[me]`` for a reference BEFORE dropping the reference
  it got it from. The owner reads all ``dropped`` cells first and THEN all ``added`` cells, so a
  block it sees as free is really free (a transient false "free" is impossible).
* Only the owner allocates and reclaims; it frees blocks from each ring's tail while the tail block
  is free (a free block behind a busy one waits). When the current ring has no room at its head or
  its front, it frees every free block of its segments, wherever it lies, and places the block in
  the first gap that fits: a new segment is created only when no own segment has a gap for it, so
  the memory an arena maps follows the bytes held at once, not how the rings happened to wrap.
  Other processes map the owner's segments from fds passed over Unix sockets
  (:meth:`Arena.map_remote`) and only touch their own header cells.
* Receivers get numpy views (:meth:`Arena.view`) that are WRITABLE and alias the owner's memory:
  MegFlow plugins mutate frames in place. The reference a view stands for is dropped when the view
  and every array derived from it are garbage (a ``weakref.finalize`` on the view's root buffer).
* An arena belongs to the process that created it: in a forked child it is inert (finalizers do
  nothing, :meth:`find` finds nothing) and mutating calls raise :class:`RuntimeError`.
"""

from __future__ import annotations

import array
import fcntl
import mmap
import os
import threading
import weakref
from bisect import bisect_left, insort
from collections import deque
from typing import NamedTuple

import numpy as np

ALIGN = 64  # payload alignment and block granularity (a cache line; enough for any dtype/SIMD)
_NAMES = 2  # header cells before the vectors: payload size, total block size


_PID = os.getpid()  # this process's id, kept current across forks (os.getpid is a system call)


def _forked() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_forked)


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class Block(NamedTuple):
    """A block of the app: ``offset`` is the header start within segment ``segment`` of ``owner``."""

    owner: int
    segment: int
    offset: int


class _Segment:
    """One mapped memfd (own or remote). ``cells`` views the mapping as native int64 (header access)."""

    __slots__ = ("fd", "size", "mm", "cells", "addr")

    def __init__(self, fd: int, size: int):
        self.fd = fd
        self.size = size
        self.mm = mmap.mmap(fd, size)  # MAP_SHARED, read/write
        # Native format 'q': memoryview item get/set are single aligned 8-byte loads/stores (no tearing).
        self.cells = memoryview(self.mm).cast("q")
        probe = np.frombuffer(self.mm, np.uint8, count=1)
        self.addr = probe.__array_interface__["data"][0]  # virtual address of the mapping in THIS process
        del probe

    def close(self) -> None:
        """Unmap (if nothing exports the mapping any more) and close the fd. Never raises."""
        try:
            self.cells.release()
            self.mm.close()
        except (BufferError, ValueError):
            pass  # someone still holds a payload memoryview; the mmap object is freed with it
        try:
            os.close(self.fd)
        except OSError:
            pass


class _Ring:
    """Owner-side bookkeeping of one own segment: live blocks ``(offset, size)`` in allocation order
    (``live``, reclaimed from its left) and their offsets in address order (``starts``)."""

    __slots__ = ("number", "seg", "live", "starts", "head")

    def __init__(self, number: int, seg: _Segment):
        self.number = number
        self.seg = seg
        self.live: deque[tuple[int, int]] = deque()
        self.starts: list[int] = []
        self.head = 0  # end of the newest block: the next allocation goes here if it fits

    def fit(self, need: int) -> int | None:
        """Offset where a block of ``need`` bytes fits at the head or at the front, or None. Does
        not change the ring."""
        starts = self.starts
        if not starts:
            return 0 if need <= self.seg.size else None
        front, head = starts[0], self.head
        if need <= front and 2 * front >= head:
            return 0  # wrap early: the free front is as large as the span up to the head (a small, hot ring)
        if starts[-1] < head:  # no live block after the head (a ring that has not wrapped)
            limit = self.seg.size
        else:  # the next live block after the head limits it
            limit = starts[bisect_left(starts, head)]
        if head + need <= limit:
            return head
        return 0 if need <= front else None

    def first_gap(self, need: int) -> int | None:
        """Lowest offset of a free gap of at least ``need`` bytes, or None (a scan of every block)."""
        pos = 0
        for off, size in sorted(self.live):
            if off - pos >= need:
                return pos
            pos = off + size
        return pos if pos + need <= self.seg.size else None

    def place(self, off: int, need: int) -> None:
        self.live.append((off, need))
        starts = self.starts
        if not starts or off > starts[-1]:
            starts.append(off)  # at the top: a ring that has not wrapped
        else:
            insort(starts, off)
        self.head = off + need

    def pop_tail(self) -> None:
        off, _ = self.live.popleft()
        starts = self.starts
        if starts[0] == off:
            del starts[0]  # the lowest: a ring that has not wrapped
        else:
            del starts[bisect_left(starts, off)]
        if not self.live:
            self.head = 0

    def keep(self, blocks) -> None:
        """Only ``blocks`` (a subsequence of ``live``) stay live."""
        self.live = deque(blocks)
        self.starts = sorted(off for off, _ in blocks)
        if not blocks:
            self.head = 0


class Arena:
    """Shared-memory blocks of process ``index`` (of ``nprocs``) plus the mappings of remote segments.

    Thread-safe: one ``RLock`` guards allocation, reclamation and this process's header cells
    (finalizers may run in any thread, even inside :meth:`alloc`).
    """

    def __init__(self, index: int, nprocs: int, segment_size: int = 128 << 20):
        if not 0 <= index < nprocs:
            raise ValueError(f"process index {index} out of range for {nprocs} processes")
        if segment_size <= 0:
            raise ValueError(f"segment_size must be positive, got {segment_size}")
        self.index = index
        self.nprocs = nprocs
        self.segment_size = _round_up(segment_size, mmap.PAGESIZE)
        self.header_size = _round_up(8 * (_NAMES + 2 * nprocs), ALIGN)
        self._pid = _PID
        self._lock = threading.RLock()
        self._segs: dict[tuple[int, int], _Segment] = {}  # every segment we know: own and remote
        self._rings: list[_Ring] = []  # own segments, by segment number
        self._current = 0  # ring we allocated from last
        self._live: dict[int, tuple[Block, int]] = {}  # id(root memoryview) -> (block, payload address)
        self._zeros = memoryview(array.array("q", bytes(16 * nprocs)))  # to clear added+dropped
        self._closed = False

    # -- header cells (indices into _Segment.cells) --------------------------------------------------
    def _added(self, offset: int, p: int) -> int:
        return offset // 8 + _NAMES + p

    def _dropped(self, offset: int, p: int) -> int:
        return offset // 8 + _NAMES + self.nprocs + p

    def _is_free(self, cells: memoryview, offset: int) -> bool:
        n = self.nprocs
        a = offset // 8 + _NAMES
        dropped = sum(cells[a + n : a + 2 * n])  # ALL dropped cells first ...
        added = sum(cells[a : a + n])  # ... THEN all added cells (see module docstring)
        return dropped == added

    def _check(self) -> None:
        if _PID != self._pid:
            raise RuntimeError("an Arena cannot be used in a forked child; create a new one there")
        if self._closed:
            raise RuntimeError("arena is closed")

    def _seg(self, key) -> _Segment:
        try:
            return self._segs[key]
        except KeyError:
            raise LookupError(f"process {self.index} has no mapping of segment {key} "
                              "(its fd must be passed and mapped with map_remote first)") from None

    # -- owner side ------------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> Block:
        """A new own block with an ``nbytes`` payload, held by the owner (``added[index] = 1``).

        The caller must eventually :meth:`release_hold` it. Reclaims the current segment's free tail
        and tries its head and its front; else frees every free block of every own segment and takes
        the first gap that fits; only then creates a segment of ``max(segment_size, needed)`` bytes.
        Raises ``OSError`` if the kernel refuses memory.
        """
        if nbytes < 0:
            raise ValueError(f"negative block size {nbytes}")
        need = self.header_size + _round_up(nbytes, ALIGN)
        with self._lock:
            self._check()
            off = None
            ring = self._rings[self._current] if self._rings else None
            if ring is not None:
                self._reclaim(ring)
                off = ring.fit(need)
            if off is None:
                ring, off = self._gap(need)
            if off is None:
                ring = self._new_segment(max(self.segment_size, need))
                off = 0
            self._current = ring.number
            ring.place(off, need)
            cells = ring.seg.cells
            a = off // 8 + _NAMES
            cells[a : a + 2 * self.nprocs] = self._zeros  # nobody else can reach a free block
            cells[off // 8] = nbytes
            cells[off // 8 + 1] = need
            cells[a + self.index] = 1  # the owner's hold
            return Block(self.index, ring.number, off)

    def _reclaim(self, ring: _Ring) -> None:
        cells = ring.seg.cells
        while ring.live and self._is_free(cells, ring.live[0][0]):
            ring.pop_tail()

    def _sweep(self, ring: _Ring) -> None:
        """Free every free block of ``ring``, wherever it lies."""
        cells = ring.seg.cells
        busy = [b for b in ring.live if not self._is_free(cells, b[0])]
        if len(busy) != len(ring.live):
            ring.keep(busy)

    def _gap(self, need: int) -> tuple[_Ring | None, int | None]:
        """Free every free block of every own segment (not only the rings' tails) and find the first
        gap of ``need`` bytes: ``(ring, offset)``, or ``(None, None)`` when no segment has one."""
        for ring in self._rings:
            self._sweep(ring)
            off = ring.first_gap(need)
            if off is not None:
                return ring, off
        return None, None

    def _new_segment(self, size: int) -> _Ring:
        size = _round_up(size, mmap.PAGESIZE)
        number = len(self._rings)
        fd = os.memfd_create(f"megflow-{self.index}-{number}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            # Receivers cannot resize it (a shrink would SIGBUS every mapping process).
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            seg = _Segment(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self._segs[(self.index, number)] = seg
        ring = _Ring(number, seg)
        self._rings.append(ring)
        return ring

    def release_hold(self, block: Block) -> None:
        """Drop the owner's hold taken by :meth:`alloc` (``dropped[index] += 1``); once per alloc."""
        if block.owner != self.index:
            raise ValueError(f"{block} is not a block of process {self.index}")
        self.drop_ref(block)

    def payload(self, block: Block) -> memoryview:
        """Writable memoryview of the block's payload. Do not keep it (it pins the mapping)."""
        seg = self._seg((block.owner, block.segment))
        start = block.offset + self.header_size
        return memoryview(seg.mm)[start : start + seg.cells[block.offset // 8]]

    # -- every process ---------------------------------------------------------------------------------
    def add_refs(self, block: Block, n: int) -> None:
        """``added[index] += n`` for a block of any process (segment must be known). Call it before
        the reference these come from (a hold or a view) is dropped."""
        with self._lock:
            self._check()
            cells = self._seg((block.owner, block.segment)).cells
            c = self._added(block.offset, self.index)
            cells[c] = cells[c] + n

    def drop_ref(self, block: Block) -> None:
        """``dropped[index] += 1`` for a block of any process (one reference this process held)."""
        with self._lock:
            self._check()
            cells = self._seg((block.owner, block.segment)).cells
            c = self._dropped(block.offset, self.index)
            cells[c] = cells[c] + 1

    def view(self, block: Block, data_offset: int, shape, strides, dtype) -> np.ndarray:
        """A writable ndarray over the block's payload, standing for ONE reference of this process.

        The reference is dropped (``dropped[index] += 1``) when the returned array and every array
        derived from it are garbage, also if this call raises (bad shape/strides: ``ValueError``).
        ``LookupError`` if the segment is unknown (nothing is counted then).
        """
        self._check()
        seg = self._seg((block.owner, block.segment))
        start = block.offset + self.header_size
        # np.frombuffer keeps a fresh memoryview of the mapping as root.base: that memoryview lives
        # exactly as long as any array derived from root (np.ndarray(buffer=<memoryview>) would NOT:
        # it keeps the mmap as base and lets the memoryview die at once).
        root = np.frombuffer(seg.mm, np.uint8, count=seg.cells[block.offset // 8], offset=start)
        root_mv = root.base
        with self._lock:
            self._live[id(root_mv)] = (block, seg.addr + start)
        weakref.finalize(root_mv, self._finalize, id(root_mv), seg, block.offset)
        return np.ndarray(shape, dtype, buffer=root, offset=data_offset, strides=strides)

    def empty(self, shape, dtype=np.uint8) -> np.ndarray:
        """A new C-contiguous, uninitialised array in this process's own shared memory.

        For producers that fill a frame in place (a decoder): sending it later costs no copy, the
        codec finds its block and sends a reference. The array stands for the owner's hold, which is
        dropped when it and every array derived from it are garbage. Any thread may call it.
        """
        dtype = np.dtype(dtype)
        shape = tuple(int(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        if any(n < 0 for n in shape):
            raise ValueError(f"negative dimension in shape {shape}")
        strides, step = [], dtype.itemsize
        for n in reversed(shape):
            strides.insert(0, step)
            step *= n
        block = self.alloc(step)
        return self.view(block, 0, shape, tuple(strides), dtype)  # the view stands for alloc's hold

    def _finalize(self, mv_id: int, seg: _Segment, offset: int) -> None:
        if _PID != self._pid:
            return  # forked child: the reference belongs to the parent
        with self._lock:
            self._live.pop(mv_id, None)
            try:
                c = self._dropped(offset, self.index)
                seg.cells[c] = seg.cells[c] + 1
            except ValueError:
                pass  # mapping already released by close(); the process is going away

    def find(self, arr: np.ndarray) -> tuple[Block, int] | None:
        """``(block, data_offset)`` if ``arr`` (or the array it is a view/slice of) is a live view
        made by :meth:`view` in this process; ``data_offset`` is the byte offset of ``arr``'s first
        element within the payload. None otherwise (also in a forked child)."""
        if not self._live or _PID != self._pid:
            return None
        obj = arr
        while isinstance(obj, np.ndarray):
            obj = obj.base
        entry = self._live.get(id(obj))  # ids of dead roots are removed by their finalizer
        if entry is None or type(obj) is not memoryview:
            return None
        block, payload_addr = entry
        return block, arr.__array_interface__["data"][0] - payload_addr

    def map_remote(self, key, fd: int) -> None:
        """Map segment ``key = (owner, segment)`` from ``fd``; takes ownership of ``fd`` (closed on
        error, or at once if the key is already known). ``OSError``/``ValueError`` if it cannot be mapped."""
        key = (int(key[0]), int(key[1]))
        with self._lock:
            if key in self._segs or self._closed:
                os.close(fd)
                return
            try:
                os.set_inheritable(fd, False)
                self._segs[key] = _Segment(fd, os.fstat(fd).st_size)
            except BaseException:
                os.close(fd)
                raise

    def knows(self, key) -> bool:
        return tuple(key) in self._segs

    def fd_of(self, key) -> int:
        """The fd of a known segment (own or remote), to pass on; stays owned by the arena."""
        return self._seg(tuple(key)).fd

    def in_use(self) -> dict:
        """Own segments: ``segments`` count, ``bytes`` mapped, live ``blocks`` and the bytes they
        ``held`` (after freeing every free block); ``views`` alive in this process."""
        with self._lock:
            if _PID == self._pid and not self._closed:
                for ring in self._rings:
                    self._sweep(ring)
            return {
                "segments": len(self._rings),
                "bytes": sum(r.seg.size for r in self._rings),
                "blocks": sum(len(r.live) for r in self._rings),
                "held": sum(size for r in self._rings for _, size in r.live),
                "views": len(self._live),
            }

    def close(self) -> None:
        """Close all fds and mappings if no view is alive in this process; otherwise do nothing
        (the views still need them). Best effort, never raises. The arena is unusable afterwards."""
        try:
            with self._lock:
                if self._live or self._closed or _PID != self._pid:
                    return
                self._closed = True
                for seg in self._segs.values():
                    seg.close()
                self._segs.clear()
                self._rings.clear()
        except Exception:
            pass
