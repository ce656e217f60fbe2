"""The HTTP/1.1 protocol the front doors serve with: uvicorn's, with a bound on a request's head.

uvicorn's httptools protocol keeps every byte of a request line and its headers until they are
complete, with no limit: a client sending an endless header makes the server's memory grow. The
protocol of :func:`protocol_class` counts what arrives before a request's head is complete and,
past ``max_header`` bytes, answers ``431 Request Header Fields Too Large`` (``414 URI Too Long``
when the request line alone is that long) and closes the connection. A head is measured when it
is complete, and while it is incomplete by the chunks read from the socket, so what is held before
a refusal is bounded by the limit plus one read (at most 256 KiB). Without httptools, uvicorn's h11
protocol is used with the same bound (h11 answers 400).
"""

from __future__ import annotations

import json
from http import HTTPStatus


def protocol_class(max_header: int):
    """A uvicorn ``http`` protocol class that refuses request heads over ``max_header`` bytes, or
    ``"h11"`` when httptools is not installed (pass ``h11_max_incomplete_event_size`` as well)."""
    try:
        import httptools  # noqa: F401
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
        return "h11"

    class BoundedHeadProtocol(HttpToolsProtocol):
        limit = int(max_header)

        def connection_made(self, transport) -> None:
            self._in_head, self._head_bytes, self._url_bytes, self._refusal = True, 0, 0, None
            self._heads = 0  # request heads completed on this connection
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            if self._refusal is not None:
                return
            in_head, heads = self._in_head, self._heads
            super().data_received(data)
            # counted: a chunk read while a head was incomplete that did not complete it (a chunk that
            # ends a message and starts the next head is not: at most one read of that head is free)
            if (in_head and self._in_head and heads == self._heads and self._refusal is None
                    and not self.transport.is_closing()):
                self._head_bytes += len(data)
                if self._head_bytes > self.limit:
                    self._refuse(431, f"request headers larger than the limit of {self.limit} bytes")

        def on_message_begin(self) -> None:
            self._url_bytes = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._url_bytes += len(url)
            if self._url_bytes > self.limit and self._refusal is None:
                self._refusal = (414, f"request line longer than the limit of {self.limit} bytes")
                raise ValueError("request line too long")  # the parser stops; send_400_response answers
            super().on_url(url)

        def on_headers_complete(self) -> None:
            self._in_head, self._head_bytes = False, 0
            self._heads += 1
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self.limit:  # a whole head that came in one read
                self._refusal = (431, f"request headers larger than the limit of {self.limit} bytes")
                raise ValueError("request head too large")  # the parser stops; send_400_response answers
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_head = True
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            if self._refusal is not None:
                self._refuse(*self._refusal)
            else:
                super().send_400_response(msg)

        def _refuse(self, status: int, detail: str) -> None:
            self._refusal = (status, detail)
            body = json.dumps({"detail": detail}).encode()
            head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
            self.transport.write(head + body)
            self.transport.close()

    return BoundedHeadProtocol
