"""A machine's bridge: the stand-in, on this machine, for every process that runs on another one.

Processes address each other by index whatever machine they run on (:mod:`megflow_mp.runtime.transport`).
On each machine the bridge listens at the Unix address of every process that is elsewhere (a
*proxy*), so a local sender needs no change: it connects, sends its batch and passes the
shared-memory fds as usual. The bridge decodes the batch, writes it to the TCP link of the machine
that runs the destination (:mod:`.wire`: array bytes raw, once) and the bridge there receives the
arrays into its own shared memory and posts the records to the destination, from the proxy of the
original sender, so the receiver credits the right process. Credits and ends of stream are records
like any other, so ``cap`` holds across machines exactly as within one.

Links: one TCP connection per direction and pair of machines, opened by :meth:`Bridge.connect` once
every bridge listens; each starts with a hello naming its machine. A link that ends (EOF, reset)
is a machine lost: ``on_lost(machine)`` is called on the hub. ``on_host(machine, message)`` gets the
control messages bridges (hosts and the supervisor) send each other (``send_host``).

Threads: the hub runs the proxies and packs outgoing frames; one thread per outgoing link writes
them (a slow link never blocks the hub); one thread per incoming link reads frames and posts them.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from typing import Callable

from ..runtime.channels import DATA
from ..runtime.transport import Transport, listen
from .wire import HOST, pack, read_frame, write_frame

log = logging.getLogger("megflow_mp")
_STOP = object()


class _Out:
    """The outgoing link to one machine: frames queued by the hub, written by a thread."""

    def __init__(self, bridge: "Bridge", machine: int, addr: tuple[str, int]):
        self.bridge, self.machine = bridge, machine
        self.sock = socket.create_connection(addr, timeout=30)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._write_loop, name=f"megflow-link-{machine}", daemon=True)
        parts, _ = pack(HOST, bridge.me, [("hello", bridge.me)], None)
        write_frame(self.sock, parts)
        self.thread.start()

    def send(self, parts: list, keep) -> None:
        self.queue.put((parts, keep))

    def _write_loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            try:
                write_frame(self.sock, item[0])
            except OSError:
                self.bridge.lost(self.machine)
                return
            del item

    def close(self) -> None:
        self.queue.put(_STOP)
        self.thread.join(timeout=5)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Bridge:
    """Proxies and links of machine ``me``; runs on ``hub`` in a process with ``arena``/``codec``.

    ``where[proc]`` is the machine of every process index (the supervisor's included);
    ``run_id`` is this machine's transport namespace. ``host`` is the IP the links listen on.
    ``listeners``: the proxies' sockets when made earlier (before forking the local workers).
    """

    def __init__(self, hub, arena, codec, run_id: str, me: int, where: dict[int, int], host: str,
                 on_lost: Callable[[int], None], on_host: Callable[[int, tuple], None], listeners=None):
        self.hub, self.arena, self.codec = hub, arena, codec
        self.me, self.where = me, dict(where)
        self.on_lost, self.on_host = on_lost, on_host
        self.proxies: dict[int, Transport] = {}
        listeners = listeners or {}
        for proc, machine in self.where.items():
            if machine != me:
                sock = listeners.get(proc) or listen(run_id, proc)
                self.proxies[proc] = Transport(hub, run_id, proc, sock, arena,
                                               on_records=lambda src, recs, p=proc: self.outbound(p, src, recs))
        self.server = socket.create_server((host, 0))
        self.address = (host, self.server.getsockname()[1])
        self.out: dict[int, _Out] = {}
        self.gone: set[int] = set()
        self.closed = False
        self._readers: list[socket.socket] = []
        threading.Thread(target=self._accept_loop, name="megflow-bridge-accept", daemon=True).start()

    # -- links ---------------------------------------------------------------------------------------------
    def connect(self, addresses: dict[int, tuple[str, int]]) -> None:
        """Open the outgoing link to every other machine (``machine -> (host, port)``)."""
        for machine, addr in addresses.items():
            if machine != self.me and machine not in self.out:
                self.out[machine] = _Out(self, machine, tuple(addr))

    def _accept_loop(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._readers.append(conn)
            threading.Thread(target=self._read_loop, args=(conn,), name="megflow-link-in", daemon=True).start()

    def _read_loop(self, conn: socket.socket) -> None:
        machine = None
        try:
            while True:
                dest, src, records = read_frame(conn, self.arena.empty)
                if dest == HOST:
                    for msg in records:
                        if msg[0] == "hello":
                            machine = msg[1]
                        else:
                            self.hub.call_soon_threadsafe(self.on_host, src, msg)
                    continue
                self.inbound(dest, src, records)
        except (EOFError, OSError):
            pass
        except Exception:  # noqa: BLE001 - a frame this bridge cannot read: the link is unusable
            log.exception("bridge of machine %d: unreadable frame from machine %s", self.me, machine)
        if machine is not None:
            self.lost(machine)

    def lost(self, machine: int) -> None:
        """The link with ``machine`` ended (either direction): reported once, on the hub."""
        if self.closed or machine in self.gone:
            return
        self.gone.add(machine)
        try:
            self.hub.call_soon_threadsafe(self.on_lost, machine)
        except RuntimeError:  # the hub is closed: the process is ending anyway
            pass

    # -- records ---------------------------------------------------------------------------------------------
    def outbound(self, dest: int, src: int, records) -> None:
        """A local process ``src`` sent ``records`` to ``dest`` (on another machine): forward them."""
        link = self.out.get(self.where[dest])
        if link is None:  # that machine is lost: what is sent to it is dropped (its end was reported)
            for rec in records:
                if rec[0] == DATA:
                    self.codec.decode(rec[2])  # decoded and dropped: the sender's blocks are released
            return
        parts, keep = pack(dest, src, records, self.codec.decode)
        link.send(parts, keep)

    def inbound(self, dest: int, src: int, records) -> None:
        """Records from ``src`` (elsewhere) for local process ``dest``: posted from ``src``'s proxy,
        DATA messages encoded by reference to the arrays just received into this bridge's memory."""
        proxy = self.proxies[src]
        encode = self.codec.encode
        for rec in records:
            if rec[0] == DATA:
                payload, segments = encode(rec[2], 1)
                proxy.post(dest, (DATA, rec[1], payload), len(payload), segments)
            else:
                proxy.post(dest, rec)
        del records
        proxy.flush(dest)

    def send_host(self, machine: int, msg: tuple) -> bool:
        """Send control message ``msg`` to the bridge of ``machine``; False if that link is gone."""
        link = self.out.get(machine)
        if link is None or machine in self.gone:
            return False
        parts, _ = pack(HOST, self.me, [msg], None)
        link.send(parts, None)
        return True

    def close(self) -> None:
        """Close the links and the proxies (what was queued is written first, briefly)."""
        if self.closed:
            return
        self.closed = True
        for link in self.out.values():
            link.close()
        try:
            self.server.close()
        except OSError:
            pass
        for conn in self._readers:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass
        for proxy in self.proxies.values():
            proxy.close()
