"""Process-to-process messaging: batched records over Unix SOCK_SEQPACKET connections.

Each process of an app listens on an abstract-namespace address (nothing on disk, gone when the
process is). A sender connects lazily, once per peer, so records from one process to another keep
their order. Records are small tuples (see :mod:`megflow_mp.runtime.channels`); a datagram is
``marshal((src, records, segment_keys))`` and carries, with SCM_RIGHTS, the memfd of every
shared-memory segment the peer has not been sent yet, so array payloads can be mapped before the
records that reference them are decoded.

Batching: ``post`` appends to the peer's pending batch; a batch is written when it is large, when
the hub is about to wait (idle hook), at once when the posting code has run for more than ``STALE``
since the previous post and since the hub last woke (a node that computes between sends: what it
posts goes out now, with everything pending), and when a node's ``exec`` returns while a batch is
older than ``STALE`` (:meth:`Transport.flush_stale`: it computed after sending). Under load many
records share one write; when idle every record goes out at once. No thread of its own: a second
thread in every worker took the GIL from the hub at each of its looks (about 5% of a 5-process chain's
rate), so a batch can wait only while one ``exec`` call sends and then blocks in its own code.
"""

from __future__ import annotations

import array
import marshal
import mmap
import socket
import threading
import time
from typing import Callable

MAX_BATCH = 256
MAX_BATCH_BYTES = 256 << 10
SNDBUF = 4 << 20
RECV_BUF = 8 << 20  # the largest datagram received; anonymous memory, resident only where written
STALE = 0.001  # posts further apart than this, in a busy spell of the hub, are written at once
FD_SPACE = socket.CMSG_SPACE(64 * array.array("i").itemsize)  # room for the segment fds of one datagram


def address(run_id: str, index: int) -> str:
    """The abstract socket address of process ``index`` of run ``run_id``."""
    return f"\0megflow-mp-{run_id}-{index}"


def listen(run_id: str, index: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.bind(address(run_id, index))
    sock.listen(256)
    sock.setblocking(False)
    return sock


class Transport:
    """Sends records to peers and hands received ones to ``on_records(src, records)`` on the hub.

    A batch that cannot be written (the peer process is gone) is dropped and ``on_peer_lost(proc)``
    is called on the hub; a peer that comes back at its address is connected to again."""

    def __init__(self, hub, run_id: str, index: int, listener: socket.socket, arena=None,
                 on_records: Callable | None = None, on_peer_lost: Callable | None = None):
        self.hub, self.run_id, self.index = hub, run_id, index
        self.arena = arena
        self.on_records = on_records
        self.on_peer_lost = on_peer_lost  # called on the hub with a peer whose socket refused a batch
        self.listener = listener
        self._out: dict[int, socket.socket] = {}
        self._pending: dict[int, list] = {}
        self._pending_keys: dict[int, list] = {}
        self._pending_bytes: dict[int, int] = {}
        self._sent_keys: dict[int, set] = {}
        self._lock = threading.Lock()  # a cluster bridge posts to its proxies from its link threads
        self._oldest = 0.0  # monotonic time a batch was started while none was pending
        self._last_post = 0.0  # monotonic time of the latest post
        # private anonymous memory: its pages become resident only as datagrams fill them (a few, mostly)
        self._buf = mmap.mmap(-1, RECV_BUF, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._view = memoryview(self._buf)
        self._closed = False
        self._peers: list[socket.socket] = []
        hub.selector.register(listener, 1, self._accept)
        hub.idle_hooks.append(self.flush_all)

    # -- sending --------------------------------------------------------------------------------------
    def post(self, proc: int, record: tuple, size: int = 64, segments=()) -> None:
        """Queue ``record`` for process ``proc``; ``segments`` are shm keys its payload references."""
        now = time.monotonic()
        with self._lock:
            batch = self._pending.get(proc)
            if batch is None:
                if not self._pending:
                    self._oldest = now
                batch = self._pending[proc] = []
                self._pending_bytes[proc] = 0
            batch.append(record)
            if segments:
                sent = self._sent_keys.setdefault(proc, set())
                for key in segments:
                    if key not in sent:
                        sent.add(key)
                        self._pending_keys.setdefault(proc, []).append(key)
            total = self._pending_bytes[proc] + size
            self._pending_bytes[proc] = total
            if len(batch) >= MAX_BATCH or total >= MAX_BATCH_BYTES:
                self._flush(proc)
            if now - self._last_post > STALE and now - self.hub.woke > STALE:
                for peer in list(self._pending):  # a slow sender: nothing it posts may wait for its next send
                    self._flush(peer)
            self._last_post = now

    def send_now(self, proc: int, record: tuple) -> None:
        self.post(proc, record)
        self.flush(proc)

    def flush(self, proc: int) -> None:
        with self._lock:
            if proc in self._pending:
                self._flush(proc)

    def flush_all(self) -> None:
        if self._pending:
            with self._lock:
                for proc in list(self._pending):
                    self._flush(proc)

    def flush_stale(self) -> None:
        """Write every batch when one has waited longer than ``STALE`` (called when a node's ``exec``
        returns: it computed after sending, and what it sent must not wait for its next send)."""
        if self._pending and time.monotonic() - self._oldest > STALE:
            self.flush_all()

    def _flush(self, proc: int) -> None:
        batch = self._pending.pop(proc)
        self._pending_bytes.pop(proc, None)
        keys = self._pending_keys.pop(proc, [])
        data = marshal.dumps((self.index, batch, keys))
        anc = []
        if keys:
            fds = array.array("i", [self.arena.fd_of(tuple(k)) for k in keys])
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
        try:
            self._conn(proc).sendmsg([data], anc)
        except (BrokenPipeError, ConnectionRefusedError, ConnectionResetError, FileNotFoundError):
            # the peer is gone (the supervisor reports why, and restarts it when its node says so);
            # a process that comes back at this address gets a new connection and every segment fd
            sock = self._out.pop(proc, None)
            if sock is not None:
                sock.close()
            self._sent_keys.pop(proc, None)
            if self.on_peer_lost is not None and not self._closed:
                self.hub.call_soon_threadsafe(self.on_peer_lost, proc)

    def _conn(self, proc: int) -> socket.socket:
        sock = self._out.get(proc)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
            sock.connect(address(self.run_id, proc))
            self._out[proc] = sock
        return sock

    def reset_peer(self, proc: int) -> None:
        """Process ``proc`` was restarted: drop what was queued for the old one, reconnect lazily,
        and send segment fds again (the new process has mapped none)."""
        with self._lock:
            for table in (self._pending, self._pending_keys, self._pending_bytes, self._sent_keys):
                table.pop(proc, None)
            sock = self._out.pop(proc, None)
            if sock is not None:
                sock.close()

    # -- receiving ------------------------------------------------------------------------------------
    def _accept(self, _mask) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            self._peers.append(conn)
            self.hub.selector.register(conn, 1, lambda m, c=conn: self._read(c))

    def _read(self, conn: socket.socket) -> None:
        buf, view, on_records = self._buf, self._view, self.on_records
        while True:
            try:
                n, anc, _flags, _ = conn.recvmsg_into([buf], FD_SPACE)
            except BlockingIOError:
                return
            except ConnectionResetError:
                n, anc = 0, []
            if n == 0:
                self.hub.selector.unregister(conn)
                self._peers.remove(conn)
                conn.close()
                return
            src, records, keys = marshal.loads(view[:n])
            if keys:
                fds = array.array("i")
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
                for key, fd in zip(keys, fds):
                    self.arena.map_remote(tuple(key), fd)
            on_records(src, records)

    def close(self) -> None:
        """Flush, close every socket and leave the hub (which may go on serving other transports)."""
        self._closed = True
        self.flush_all()
        if self.flush_all in self.hub.idle_hooks:
            self.hub.idle_hooks.remove(self.flush_all)
        for sock in self._peers + [self.listener]:
            try:
                self.hub.selector.unregister(sock)
            except (KeyError, ValueError, RuntimeError):  # not registered, or the hub is closed
                pass
        for sock in list(self._out.values()) + self._peers + [self.listener]:
            try:
                sock.close()
            except OSError:
                pass
