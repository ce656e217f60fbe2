"""A TCP proxy between an RTSP client and a real RTSP server that damages RTP payloads on demand.

RTSP over TCP (``rtsp_transport=tcp``) carries the RTSP messages and, after PLAY, the RTP and RTCP
packets on one connection: each packet is an interleaved frame ``'$' <channel> <2-byte length>
<packet>`` between the text messages. The proxy parses both directions into those units, rewrites
the server's address in the RTSP text (``Content-Base``, the SDP, ``RTP-Info``; and back in the
client's requests) so the client only ever talks to the proxy, and passes interleaved frames on
with their framing untouched. While :meth:`MangleProxy.corrupt` is on, one in ``every`` RTP packets
of H.264 slices (NAL types 1 and 5, whole or as FU-A/STAP-A payload) gets bytes of its slice data
inverted: the RTP header, the NAL and FU headers and the first bytes of the slice stay intact, so the
client still receives well-formed RTP carrying a damaged picture, as from a camera with a bad link
or a faulty encoder. Typical use::

    with RtspServer(pattern="ball") as cam, MangleProxy(cam.url) as proxy:
        open(proxy.url) ...              # rtsp://127.0.0.1:<proxy port>/test, TCP transport
        proxy.corrupt(every=20)          # from now on
        ...
        proxy.corrupt(None)              # clean again
        proxy.corrupted                  # RTP packets damaged so far
"""

from __future__ import annotations

import random
import re
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

_HEAD_END = b"\r\n\r\n"
_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.I | re.M)
_SLICES = (1, 5)  # H.264 NAL unit types of coded slices (non-IDR, IDR)


def rtp_payload_offset(packet: bytes | bytearray) -> int | None:
    """Where the payload of an RTP packet starts (after CSRCs and the header extension); None when
    ``packet`` is not RTP version 2 or is too short to hold its own header."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        return None
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if len(packet) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(packet[offset + 2:offset + 4], "big")
    if packet[0] & 0x20:  # padding: the last byte says how much
        if packet[-1] >= len(packet) - offset:
            return None
    return offset if offset < len(packet) else None


def slice_data(packet: bytes | bytearray) -> tuple[int, int] | None:
    """``(start, end)`` of the H.264 slice data in an RTP packet that may be damaged: past the NAL
    header (and FU indicator and header) and the first 8 bytes of a slice (its header: which
    picture and parameter set it belongs to), before any padding; None when the packet carries no
    slice (parameter sets, SEI, STAP-A of those) or too little of one."""
    offset = rtp_payload_offset(packet)
    if offset is None:
        return None
    end = len(packet) - (packet[-1] if packet[0] & 0x20 else 0)
    nal = packet[offset] & 0x1F
    if nal in _SLICES:
        start = offset + 1 + 8
    elif nal == 28 and offset + 1 < end:  # FU-A: indicator, header (start bit, type)
        if packet[offset + 1] & 0x1F not in _SLICES:
            return None
        first = packet[offset + 1] & 0x80
        start = offset + 2 + (8 if first else 0)
    else:  # STAP-A and the rest: left alone (parameter sets travel there)
        return None
    return (start, end) if end - start >= 4 else None


class MangleProxy:
    """Listens on ``127.0.0.1:<free port>`` and forwards every connection to ``upstream`` (an
    ``rtsp://host:port/path`` URL); ``url`` is the same URL through the proxy. A context manager.

    ``corrupt(every=N, bytes_per_packet=K)`` damages one in N RTP slice packets from then on
    (``None`` stops); ``corrupted`` counts the packets damaged, ``rtp_packets`` those forwarded.
    """

    def __init__(self, upstream: str, seed: int = 1):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port or 554)
        self._server_addr = f"{parts.hostname}:{self.upstream[1]}".encode()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._proxy_addr = f"127.0.0.1:{self.port}".encode()
        self.url = urlunsplit((parts.scheme, f"127.0.0.1:{self.port}", parts.path, parts.query, parts.fragment))
        self._lock = threading.Lock()
        self._every: int | None = None
        self._bytes = 4
        self._seen = 0  # slice packets seen while corrupting (every Nth is damaged)
        self._random = random.Random(seed)
        self.corrupted = self.rtp_packets = self.connections = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._accepter = threading.Thread(target=self._accept, name="mangle-proxy-accept", daemon=True)
        self._accepter.start()

    # -- control -----------------------------------------------------------------------------------
    def corrupt(self, every: int | None = 20, bytes_per_packet: int = 4) -> None:
        """Damage one in ``every`` RTP slice packets from now on (``None``: stop damaging)."""
        if every is not None and every < 1:
            raise ValueError("every must be at least 1")
        with self._lock:
            self._every, self._bytes, self._seen = every, bytes_per_packet, 0

    def close(self) -> None:
        self._closed = True
        for s in [self._listener, *self._sockets]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._accepter.join(5)
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> "MangleProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- forwarding --------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            self.connections += 1
            for src, dst, to_client in ((client, server, False), (server, client, True)):
                t = threading.Thread(target=self._pump, args=(src, dst, to_client), daemon=True,
                                     name=f"mangle-proxy-{'down' if to_client else 'up'}")
                self._threads.append(t)
                t.start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_client: bool) -> None:
        """Forward ``src`` to ``dst`` unit by unit (an RTSP message or an interleaved frame)."""
        buf = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                out = bytearray()
                while (unit := self._take(buf)) is not None:
                    out += self._rewrite(unit, to_client) if unit[:1] != b"$" else self._mangle(unit, to_client)
                if out:
                    dst.sendall(out)
        except OSError:
            pass
        finally:
            for s in (src, dst):  # one side gone: the other sees the connection end too
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @staticmethod
    def _take(buf: bytearray) -> bytes | None:
        """The first complete unit of ``buf`` (removed from it), or None when more bytes are needed."""
        if not buf:
            return None
        if buf[0] == 0x24:  # '$' channel length(2) packet
            if len(buf) < 4:
                return None
            size = 4 + int.from_bytes(buf[2:4], "big")
        else:
            head = buf.find(_HEAD_END)
            if head < 0:
                return None
            m = _LENGTH.search(bytes(buf[:head]))
            size = head + len(_HEAD_END) + (int(m.group(1)) if m else 0)
        if len(buf) < size:
            return None
        unit = bytes(buf[:size])
        del buf[:size]
        return unit

    def _rewrite(self, message: bytes, to_client: bool) -> bytes:
        """An RTSP message with the server's address swapped for the proxy's (or back)."""
        old, new = (self._server_addr, self._proxy_addr) if to_client else (self._proxy_addr, self._server_addr)
        if old not in message:
            return message
        head, _, body = message.partition(_HEAD_END)
        head, body = head.replace(old, new), body.replace(old, new)
        if body:
            head = _LENGTH.sub(b"Content-Length: %d" % len(body), head)
        return head + _HEAD_END + body

    def _mangle(self, frame: bytes, to_client: bool) -> bytes:
        """An interleaved frame, its RTP payload damaged when its turn came; the framing as it was."""
        if not to_client or frame[1] % 2:  # the client's reports, RTCP (odd channels): as they are
            return frame
        with self._lock:
            self.rtp_packets += 1
            if self._every is None:
                return frame
            span = slice_data(memoryview(frame)[4:])
            if span is None:
                return frame
            self._seen += 1
            if self._seen % self._every:
                return frame
            self.corrupted += 1
            packet = bytearray(frame)
            start, end = span[0] + 4, span[1] + 4
            for _ in range(self._bytes):
                packet[self._random.randrange(start, end)] ^= 0xFF
            return bytes(packet)
