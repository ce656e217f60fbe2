"""A real HTTP receiver for web-hook tests: records every POSTed body, can fail, be slow, or stop.

    with Receiver() as rx:              # listening on a free port: rx.url
        ...                              # POST JSON arrays of records to rx.url
        rx.records()                     # every record received (duplicates included), in arrival order
        rx.status = 503                  # answer 503 from now on (nothing is recorded)
        rx.delay = 0.05                  # answer each request after 50 ms
        rx.stop(); rx.start()            # not listening / listening again on the same port

A record is kept only when the answer is 2xx (a failed POST is what the sender retries). The
``X-Megflow-Signature`` header of each request is kept in ``signatures`` with its raw body.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.rtsp import free_port


class Receiver:
    def __init__(self, port: int | None = None, status: int = 200, delay: float = 0.0):
        self.port = port or free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.status, self.delay = status, delay
        self.lock = threading.Lock()
        self.got: list = []
        self.signatures: list = []
        self.headers: list = []
        self.requests = 0
        self.server = None
        self.start()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.status
                with receiver.lock:
                    receiver.requests += 1
                    if 200 <= status < 300:
                        receiver.got.extend(json.loads(body))
                        receiver.signatures.append((self.headers.get("X-Megflow-Signature"), body))
                        receiver.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def records(self) -> list:
        with self.lock:
            return list(self.got)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
