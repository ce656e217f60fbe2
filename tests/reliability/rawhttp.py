"""HTTP/1.1 over a plain socket, for requests no client library sends as written (dot segments,
huge or broken heads, bodies cut short, slow clients). 127.0.0.1 only."""

from __future__ import annotations

import socket
import threading
import time


def exchange(port: int, data: bytes, timeout: float = 30, close_after_send: bool = False) -> tuple[int | None, bytes]:
    """Send ``data``, read the reply until the server closes; returns (status, whole reply).

    status is None when no status line came back (the server closed the connection without one,
    or ``close_after_send``: the client hung up, which is the point of the case).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:  # the server refused the rest and closed: what it answered is still readable
            pass
        if close_after_send:
            return None, b""
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except OSError:
            pass
    return status_of(out), out


def status_of(reply: bytes) -> int | None:
    head = reply.split(b"\r\n", 1)[0].split()
    return int(head[1]) if len(head) >= 2 and head[0].startswith(b"HTTP/") and head[1].isdigit() else None


def request(method: str, target: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    """A complete request with ``Connection: close`` and a Content-Length, target as written."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class SlowClients:
    """``n`` connections that send a request one byte per ``interval`` seconds and never finish it
    (slowloris), until :meth:`close`: the head (``body=False``), or, after a complete head, a body
    of a megabyte (``body=True``). ``opened``: connections made; ``cut``: connections the server
    closed on them (a server may time slow clients out: that is allowed)."""

    HEAD = b"POST /analyze/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n" + b"X-Slow: " + b"a" * 4096
    BODY_HEAD = (b"POST /analyze/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                 b"Content-Length: 1000000\r\n\r\n")

    def __init__(self, port: int, n: int, interval: float = 0.05, body: bool = False):
        self.socks: list[socket.socket] = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if body:
                s.sendall(self.BODY_HEAD)
            s.setblocking(False)
            self.socks.append(s)
        self.body = body
        self.opened, self.cut, self.bytes_sent = len(self.socks), 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, args=(interval,), daemon=True)
        self._thread.start()

    def _trickle(self, interval: float) -> None:
        pos = 0
        live = list(self.socks)
        while live and not self._stop.wait(interval):
            byte = b"a" if self.body else self.HEAD[pos % len(self.HEAD): pos % len(self.HEAD) + 1]
            pos += 1
            for s in list(live):
                try:
                    s.send(byte)
                    self.bytes_sent += 1
                except BlockingIOError:
                    pass
                except OSError:
                    live.remove(s)
                    self.cut += 1

    def wait_sent(self, nbytes: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.bytes_sent < nbytes and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self.socks:
            s.close()
