"""HTTP front doors inside the engine: a FastAPI app served by uvicorn on a thread of a node's worker.

A :class:`FrontDoor` belongs to one server node (ImageServer, BytesServer, VideoServer). Its
socket is bound when the node is built (a port in use fails the app before it starts, naming the
node) and it serves from then on, but until the node starts (:meth:`FrontDoor.start`) it answers
only health probes: ``/healthz`` 200, ``/readyz`` 503 with the reasons (:mod:`.health`: other
workers may still be loading their models), every other request ``503 {"detail": "starting"}``
with ``Retry-After``. Once the node runs, every request goes to its app. Requests are turned into
envelopes and sent into the graph by tasks on the worker's hub (never blocking the event loop);
the node's ``exec`` receives the results on the hub and :meth:`FrontDoor.deliver` hands each to
the request that waits for it, matched by ``partial_id``. A request that gets no result within
``timeout`` seconds is answered 504; at most ``max_inflight`` requests are in the graph at once
(more wait their turn). With an ``origin`` (see :meth:`Worker.add_requester`), requests carry it
through the graph: a node that raises on one reports it back (:meth:`FrontDoor.fail`) and the
request raises :class:`RequestFailed`.

Auth and TLS (:mod:`.auth`): ``tls_cert``/``tls_key`` serve HTTPS (the context is loaded before the
socket is bound: a bad file fails the node at once); :meth:`FrontDoor.protect` (the node's
``bind_runtime``, with the app's tokens file) refuses a non-loopback ``host`` without auth unless
``insecure``, and :meth:`FrontDoor.start` puts the guard in front of the node's app. Health probes
stay open.

Drain (Ctrl-C): the server stops accepting, the requests already in the graph are answered, then
the node ends. An end without a drain (the app fails: a worker died without ``restart``) answers
what waits 503 before the process exits (:meth:`FrontDoor.abandon`).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import socket
import threading

from .envelope import Envelope
from .errors import FrontDoorError, RequestFailed, ServiceStopping

log = logging.getLogger("megflow_mp")
SECURITY_ARGS = ("tls_cert", "tls_key", "insecure")


def door_options(args) -> dict:
    """The auth and TLS arguments of a server node's ``args`` (``tls_cert``, ``tls_key``, ``insecure``)
    as :class:`FrontDoor` takes them."""
    return {k: args[k] for k in SECURITY_ARGS if k in args}


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one); FrontDoorError if impossible."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio turns Nagle off only on connections whose socket says TCP,
    # and with Nagle on every request after the first on a keep-alive connection waits ~40 ms
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError, ValueError, TypeError) as exc:  # in use, no such host, port out of range, NUL
        sock.close()
        hint = ""
        if getattr(exc, "errno", None) == errno.EADDRINUSE:
            hint = " (another program, perhaps another megflow-mp app, holds it: stop that one or give this node another `port`)"
        reason = getattr(exc, "strerror", None) or exc
        raise FrontDoorError(f"cannot listen on {host}:{port}: {reason}{hint}") from None
    sock.listen(1024)
    return sock


class FrontDoor:
    """Serves ``app`` and bridges its requests to the graph of the node that owns it."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 8080, timeout: float = 30.0,
                 max_inflight: int = 64, max_header: int = 64 << 10, tls_cert=None, tls_key=None,
                 insecure=False):
        from .auth.policy import tls_context

        self.name, self.host, self.timeout = name, host, float(timeout)
        self.ssl = tls_context(f"server {name!r}", tls_cert, tls_key)
        self.insecure = insecure
        self.guard = None  # the auth of this server (protect()); None: open
        self.max_inflight = int(max_inflight)
        self.max_header = int(max_header)  # bytes of a request line and headers (then 431/414)
        self.sock = bind(host, int(port))
        self.port = self.sock.getsockname()[1]
        self.pending: dict[int, asyncio.Future] = {}
        self.ids = itertools.count()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server = None
        self.thread: threading.Thread | None = None
        self.hub = None
        self.send = None
        self._limit: asyncio.Semaphore | None = None
        self.accepting = True
        self.stopping: str | None = None  # why requests are refused now (set by abandon)
        self.origin = None  # stamped on every request's envelope when nodes may fail it alone
        self.app = None  # the node's app, from start(); until then the gate answers health probes only
        self._serve()

    def ready_reasons(self) -> list[str]:
        """Why this server is not ready itself (empty: it runs its routes)."""
        if self.stopping is not None or not self.accepting:
            return [f"server {self.name!r} is stopping"]
        if self.app is None:
            return [f"server {self.name!r} has not started (the app is starting)"]
        return []

    # -- life cycle (hub side) ---------------------------------------------------------------------------
    def _serve(self) -> None:
        """Serve the socket on a thread from now on: :class:`Gate` answers health probes until
        :meth:`start` gives it the node's app."""
        import uvicorn

        from .http_protocol import protocol_class

        tls = None if self.ssl is None else {"ssl_context_factory": lambda config, default: self.ssl}
        config = uvicorn.Config(Gate(self), log_level="warning", lifespan="off", access_log=False,
                                interface="asgi3", **(tls or {}),
                                timeout_graceful_shutdown=max(1, int(self.timeout)),
                                http=protocol_class(self.max_header), h11_max_incomplete_event_size=self.max_header)
        self.server = uvicorn.Server(config)
        ready = threading.Event()

        def serve():
            async def main():
                self.loop = asyncio.get_running_loop()
                self._limit = asyncio.Semaphore(self.max_inflight)
                ready.set()
                await self.server.serve(sockets=[self.sock])

            try:
                asyncio.run(main())
            except BaseException as exc:  # noqa: BLE001 - reported, the node goes on answering nothing
                log.error("front door of %r stopped: %s", self.name, exc)
            finally:
                ready.set()

        self.thread = threading.Thread(target=serve, name=f"http:{self.name}", daemon=True)
        self.thread.start()
        ready.wait()

    def protect(self, tokens) -> None:
        """Set this server's auth: ``tokens`` (the app's tokens file, or None). Raises
        :class:`~.errors.AuthError` (one line saying how to add auth) when the server is reachable
        from other machines without auth and without ``insecure``; warns when it is with it."""
        from .auth import Guard, check_exposed

        check_exposed(f"server {self.name!r}", self.host, self.insecure, tokens)
        self.guard = Guard(tokens, secure=self.ssl is not None) if tokens else None

    def start(self, app, hub, send) -> None:
        """Serve ``app`` (its routes, from now on); ``send(envelope)`` (run as a hub task) puts a
        request in the graph. A FastAPI app of :func:`~.nodes.http_routes.make_app` gets this
        server's own readiness among its ready checks; with auth (:meth:`protect`) every route of
        ``app`` is behind the guard, whatever built it (:func:`.auth.protect`)."""
        self.hub, self.send = hub, send
        checks = getattr(getattr(app, "state", None), "ready_checks", None)
        if isinstance(checks, list):
            checks.insert(0, self.ready_reasons)
        if self.guard is not None:
            from .auth import AuthMiddleware, protect

            if hasattr(app, "user_middleware") and hasattr(app, "openapi"):
                protect(app, self.guard)
            else:  # an ASGI app of a plugin: guarded whole
                app = AuthMiddleware(app, self.guard)
        self.app = app
        scheme = "https" if self.ssl is not None else "http"
        auth = f", auth: tokens of {self.guard.verifier.path}" if self.guard is not None else ""
        log.info("%s listening on %s://%s:%d (Swagger UI at /docs%s)", self.name, scheme, self.host, self.port, auth)

    def stop_accepting(self) -> None:
        """Stop taking new requests (those in the graph still get their answers)."""
        self.accepting = False
        if self.server is not None:
            self.server.should_exit = True

    def abandon(self, reason: str, wait: float = 2.0) -> None:
        """The app is ending without a drain (any thread): every request waiting for the graph, and
        every one that comes meanwhile, raises :class:`ServiceStopping` (its client gets a 503 with
        ``reason``); the server stops and this waits up to ``wait`` seconds for those answers to be
        written."""
        self.stopping = reason
        if self.loop is not None:
            for pid in list(self.pending):
                fut = self.pending.pop(pid, None)
                if fut is not None:
                    self.loop.call_soon_threadsafe(_reject, fut, ServiceStopping(reason))
        self.stop_accepting()
        if self.thread is not None:
            self.thread.join(wait)

    def close(self) -> None:
        self.stop_accepting()
        if self.thread is not None:
            self.thread.join(self.timeout + 5)
        self.sock.close()

    def deliver(self, envelope: Envelope) -> bool:
        """A result came back (on the hub): wake the request with that ``partial_id``."""
        fut = self.pending.pop(envelope.partial_id, None)
        if fut is None or self.loop is None:
            return False
        self.loop.call_soon_threadsafe(_resolve, fut, envelope)
        return True

    def fail(self, partial_id, failure) -> None:
        """A node raised on request ``partial_id`` (on the hub): it raises RequestFailed."""
        fut = self.pending.pop(partial_id, None)
        if fut is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(_reject, fut, RequestFailed(failure.summary()))

    # -- requests (event-loop side) ------------------------------------------------------------------------
    async def request(self, msg, extra_data=None) -> Envelope:
        """Send ``msg`` into the graph and wait for its result; raises TimeoutError after ``timeout``,
        RequestFailed when a node raised on it, ServiceStopping when the app ends meanwhile."""
        async with self._limit:
            if self.stopping is not None:
                raise ServiceStopping(self.stopping)
            pid = next(self.ids)
            fut = self.loop.create_future()
            self.pending[pid] = fut
            envelope = Envelope.pack(msg, info={"partial_id": pid, "extra_data": extra_data, "origin": self.origin})
            self.hub.call_soon_threadsafe(self.hub.spawn, self.send, envelope)
            try:
                return await asyncio.wait_for(fut, self.timeout)
            finally:
                self.pending.pop(pid, None)

    def inflight(self) -> int:
        return len(self.pending)


class Gate:
    """The ASGI app a front door serves: its node's app once the node runs, before that health
    probes only (:mod:`.health`)."""

    def __init__(self, door: FrontDoor):
        self.door = door

    async def __call__(self, scope, receive, send):
        app = self.door.app
        if app is not None:
            return await app(scope, receive, send)
        from . import health

        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})  # "try again later"
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path == "/healthz":
            await health.answer(scope, receive, send, 200, health.HEALTHY_EXAMPLE)
        elif path == "/readyz":
            status, body = health.readiness(health.APP.report, before=self.door.ready_reasons())
            await health.answer(scope, receive, send, status, body)
        else:
            await health.answer(scope, receive, send, 503, {"detail": health.STARTING}, {"Retry-After": "1"})


def _resolve(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


def _reject(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
