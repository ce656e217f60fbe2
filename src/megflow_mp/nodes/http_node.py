"""Base of the HTTP server nodes (ImageServer, BytesServer): the node side of a FrontDoor.

Ports: ``out`` carries each request into the graph (``partial_id`` identifies it), ``inp`` brings
the results back. Its arguments (:class:`HttpArgs`, the table in each server's reference): where it
listens (``host`` 127.0.0.1 by default: only this machine can connect; give ``"0.0.0.0"`` to serve
other machines, which needs the app's ``[auth]`` (:mod:`megflow_mp.auth`) or ``insecure = true``),
TLS (``tls_cert`` and ``tls_key``; a missing or unreadable file fails the node at start, naming
it), and its limits: a request waits ``timeout`` for its result (then 504), a body over
``max_body`` is 413, a request line and headers over ``max_header`` are 431 (414 for the line
alone; the connection is closed), ``max_inflight`` requests are in the graph at once (more wait
their turn), and past ``max_pending`` requests being served (from reading the body to the reply)
more are answered at once 503 with ``Retry-After: retry_after``. ``on_error``: what a node raising
on a request does: ``"reply"`` (that request is answered 500 naming the node and its exception, the
node and the server go on) or ``"exit"`` (the node ends and the app with it, exit 1: for batch runs
that must stop at the first error).

Health probes (:mod:`megflow_mp.health`): ``GET /healthz`` and ``GET /readyz`` are answered from
the moment the node is built (while the other workers may still load their models); the other
routes answer ``503 {"detail": "starting"}`` until the node runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import Cancelled
from ..frontdoor import FrontDoor
from ..nodeargs import NodeArgs
from .http_routes import reply_error


class ListenArgs(NodeArgs):
    """Where a front door listens, and its TLS (every server node)."""

    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on (0: any free one)")
    host: str = Field("127.0.0.1", description="address to listen on; other than loopback needs [auth] or insecure")
    timeout: float = Field(30, gt=0, description="seconds a request waits for its result (then 504)")
    max_header: int = Field(64 << 10, ge=1024, description="bytes of a request line and its headers (then 431)")
    tls_cert: str | None = Field(None, description="PEM certificate file: serve HTTPS (with tls_key)")
    tls_key: str | None = Field(None, description="PEM private key file of tls_cert")
    insecure: bool = Field(False, description="let a host other than loopback serve without [auth] (a warning)")

    def door(self) -> dict:
        """The :class:`~megflow_mp.frontdoor.FrontDoor` keyword arguments these say."""
        return self.model_dump(include={"port", "host", "timeout", "max_header", "tls_cert", "tls_key", "insecure"})


class HttpArgs(ListenArgs):
    """The arguments of ImageServer and BytesServer (one request, one answer)."""

    max_body: int = Field(32 << 20, ge=1, description="bytes of a request body, raw or multipart (then 413)")
    max_inflight: int = Field(64, ge=1, description="requests in the graph at once (more wait their turn)")
    max_pending: int = Field(256, ge=1, description="requests being served at once (more: 503 with Retry-After)")
    retry_after: int = Field(1, ge=0, description="seconds a 503 tells the client to wait (Retry-After)")
    on_error: Literal["reply", "exit"] = Field(
        "reply", description="a node raising on a request: answer it 500 and go on (reply), or end the app (exit)")


class HttpServerNode:
    interactive = True  # answers HTTP clients: its worker keeps the normal scheduling policy
    drain_as_source = True  # Ctrl-C stops it like a source: no new requests, answer the pending ones

    ARGS = HttpArgs  # what the subclass registers with @register(args=...)

    def __init__(self, name, args):
        self.name = name
        self.args = a = self.ARGS.of(args, f"{type(self).__name__} {name!r}")
        self.max_body, self.max_pending, self.retry_after, self.on_error = (a.max_body, a.max_pending, a.retry_after,
                                                                             a.on_error)
        self.draining = False
        self.serving = 0  # requests being served (on the server's event loop only)
        # last: it serves health probes (megflow_mp.health) from now on, its routes once the node runs
        self.door = FrontDoor(name, max_inflight=a.max_inflight, **a.door())

    def bind_runtime(self, worker, node):
        self.hub = worker.hub
        self.door.protect(getattr(worker.app, "auth", None))  # the app's [auth] (or --auth-tokens)
        if self.on_error == "reply":
            self.door.origin = worker.add_requester(self.door.fail)
        worker.exit_hooks.append(lambda: self.door.abandon("the app is stopping (a worker failed or it was "
                                                           f"stopped); retry in {self.retry_after} s"))

    async def ask(self, msg, extra_data):
        """``(result envelope, None)``, or ``(None, error response)``: 504 when the graph gave no
        result in time, 500 naming the node that raised on it, 503 when the app is ending."""
        import asyncio

        from ..errors import RequestFailed, ServiceStopping

        try:
            return await self.door.request(msg, extra_data), None
        except asyncio.TimeoutError:
            return None, reply_error(504, f"no result from the graph within {self.door.timeout:g} s")
        except ServiceStopping as exc:
            return None, reply_error(503, str(exc), headers={"Retry-After": str(self.retry_after)})
        except RequestFailed as exc:
            return None, reply_error(500, str(exc))

    def build_app(self):  # pragma: no cover - each server defines its routes
        raise NotImplementedError

    async def admit(self, handler, *args):
        """``await handler(*args)`` unless ``max_pending`` requests are being served: then 503."""
        if self.serving >= self.max_pending:
            return reply_error(503, f"{self.serving} requests are being served, the most this server takes; "
                                    f"retry in {self.retry_after} s", headers={"Retry-After": str(self.retry_after)})
        self.serving += 1
        try:
            return await handler(*args)
        finally:
            self.serving -= 1

    def exec(self):
        if self.door.app is None:
            self.door.start(self.build_app(), self.hub, self.out.send)
        try:
            envelope = self.inp.recv()
        except Cancelled:
            self.drain()
            raise
        if envelope is not None:
            self.door.deliver(envelope)

    def drain(self):
        """Answer what is in the graph, then stop: new requests are refused meanwhile."""
        self.door.stop_accepting()
        while self.door.inflight():
            envelope = self.inp.recv()
            if envelope is None:
                break
            self.door.deliver(envelope)

    def __del__(self):
        door = getattr(self, "door", None)
        if door is not None:
            door.close()
