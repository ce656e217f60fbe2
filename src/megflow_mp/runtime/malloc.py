"""Giving the C heap's free memory back to the system once work in a worker has ended.

glibc's malloc keeps what a process frees: memory goes back to the system only from the top of a
heap, and only above a trim threshold that glibc raises (up to 64 MB) each time a large block
that had been mapped on its own is freed. A worker whose subgraph instances come and go (a
VideoServer: per stream a decode thread and FFmpeg's codec threads, each allocating in one of up
to 8 x cores malloc arenas; the workers hosting the streams' nodes) frees everything a stream
used, yet its resident memory climbs with the streams started: the freed chunks stay resident
between live ones, in every arena those threads touched, while the bytes in use stay flat.
``malloc_trim(0)`` returns the free pages of every arena (``MADV_DONTNEED``), wherever they are,
except the free top of a per-thread arena (given back only above the trim threshold): that part
stays at the arena's high-water mark, which creeps up as streams come and go, once per arena.
:func:`limit_arenas` bounds the arenas of a process that decodes streams to one per core (at
least 4; glibc's default is 8 per core), so that creep stays small.

:func:`trim_soon` asks for that after an instance ended: a background thread of the process trims
at once when the last trim is ``INTERVAL`` seconds old, else when it is, so a burst of ends costs
two trims a second (a trim takes well under a millisecond on a worker's heap) and the last end of
a burst is followed by one within half a second. Never on the hub's thread. A no-op where the C
library has no ``malloc_trim`` (musl, macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time

INTERVAL = 0.5  # seconds: at most one trim this often

trims = 0  # heap trims done by this process (diagnostics, tests)


def _load():
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_malloc_trim = _load()
_lock = threading.Lock()
_wanted = threading.Event()
_thread: threading.Thread | None = None  # the trimmer, started by the first trim_soon()


def available() -> bool:
    return _malloc_trim is not None


M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
_limited = False


def limit_arenas() -> None:
    """At most one malloc arena per core (at least 4) in this process; once, before it decodes.

    Threads that come and go (a stream's decode thread and FFmpeg's codec threads) each take an
    arena, up to 8 per core, and each arena keeps its high-water mark of free memory at its top.
    One per core leaves no more threads than cores contending for them. glibc settles its limit
    once a process has more than 8 arenas: called later, this changes nothing. A no-op without
    glibc's ``mallopt``."""
    global _limited
    if _limited:
        return
    _limited = True
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(M_ARENA_MAX, max(4, os.cpu_count() or 1))


def trim() -> None:
    """Return the free pages of every malloc arena to the system now (the calling thread)."""
    global trims
    if _malloc_trim is not None:
        _malloc_trim(0)  # a ctypes call: the GIL is released meanwhile
        trims += 1


def _trimmer() -> None:
    last = float("-inf")
    while True:
        _wanted.wait()
        wait = last + INTERVAL - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # requests meanwhile are served by this one trim
        _wanted.clear()
        trim()
        last = time.monotonic()


def trim_soon() -> None:
    """Trim the heap from the background thread: now, or ``INTERVAL`` s after the last trim."""
    global _thread
    if _malloc_trim is None:
        return
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_trimmer, name="megflow-malloc-trim", daemon=True)
            _thread.start()
    _wanted.set()


def _forked() -> None:
    """A forked child has no trimmer thread (and a fresh lock, whoever held the parent's)."""
    global _lock, _wanted, _thread
    _lock, _wanted, _thread = threading.Lock(), threading.Event(), None


os.register_at_fork(after_in_child=_forked)
