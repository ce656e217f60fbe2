"""Base of the HTTP server nodes (ImageServer, BytesServer): the node side of a FrontDoor.

Ports: ``out`` carries each request into the graph (``partial_id`` identifies it), ``inp`` brings
the results back. Args:

- ``port`` (default 8080); ``host`` (default 127.0.0.1: only this machine can connect; give
  ``"0.0.0.0"`` to serve other machines);
- ``timeout``: seconds a request waits for its result (default 30: then 504);
- ``max_body``: bytes of a request body, raw or multipart (default 32 MiB: then 413);
- ``max_header``: bytes of a request line and its headers (default 64 KiB: then 431, or 414 for
  the line alone; the connection is closed);
- ``max_inflight``: requests in the graph at once (default 64; more wait their turn);
- ``max_pending``: requests being served at once, from reading the body to the reply (default
  256); more are answered at once 503 with ``Retry-After: retry_after`` (seconds, default 1);
- ``tls_cert``, ``tls_key``: PEM files: serve HTTPS (a missing or unreadable file fails the node
  at start, naming it);
- ``insecure``: ``true`` lets a ``host`` other than loopback serve without auth (a warning at
  every start); without it such a server needs the app's ``[auth]`` (:mod:`megflow_mp.auth`);
- ``on_error``: what a node raising on a request does: ``"reply"`` (the default: that request is
  answered 500 naming the node and its exception, the node and the server go on) or ``"exit"``
  (the node ends and the app with it, exit 1: for batch runs that must stop at the first error).

Health probes (:mod:`megflow_mp.health`): ``GET /healthz`` and ``GET /readyz`` are answered from
the moment the node is built (while the other workers may still load their models); the other
routes answer ``503 {"detail": "starting"}`` until the node runs.
"""

from __future__ import annotations

from ..frontdoor import FrontDoor, door_options
from ..errors import Cancelled
from .http_routes import reply_error


class HttpServerNode:
    interactive = True  # answers HTTP clients: its worker keeps the normal scheduling policy
    drain_as_source = True  # Ctrl-C stops it like a source: no new requests, answer the pending ones

    def __init__(self, name, args):
        self.name = name
        self.max_body = int(args.get("max_body", 32 << 20))
        self.draining = False
        self.max_pending = int(args.get("max_pending", 256))
        self.retry_after = int(args.get("retry_after", 1))
        if self.max_pending < 1:
            raise ValueError(f"{type(self).__name__} {name!r}: max_pending must be at least 1, got {self.max_pending}")
        self.serving = 0  # requests being served (on the server's event loop only)
        self.on_error = str(args.get("on_error", "reply"))
        if self.on_error not in ("reply", "exit"):
            raise ValueError(f"{type(self).__name__} {name!r}: on_error must be 'reply' or 'exit', "
                             f"got {self.on_error!r}")
        # last: it serves health probes (megflow_mp.health) from now on, its routes once the node runs
        self.door = FrontDoor(name, host=str(args.get("host", "127.0.0.1")), port=int(args.get("port", 8080)),
                              timeout=float(args.get("timeout", 30)), max_inflight=int(args.get("max_inflight", 64)),
                              max_header=int(args.get("max_header", 64 << 10)), **door_options(args))

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
