"""Front-door metrics: an ASGI middleware that counts requests by route and status, times them
and counts those in flight; :func:`instrument` also adds ``/metrics`` and ``/dashboard``.

The route label is the matched route's template (``/analyze/{extra_data}``, ``/view/{sid}``), or
``(unmatched)`` for a 404 on no route: never the raw path, so label sets stay bounded. Latency is
from the request's arrival to the start of its response (a streaming response, such as a live
view, counts as in flight until it ends). The counters live in this process's :class:`HttpStats`
(a lock per request, on the server's event loop thread), exported by the process's sampler.
"""

from __future__ import annotations

import threading
import time

from .catalog import BUCKETS
from .exectime import Histogram

UNMATCHED = "(unmatched)"


class HttpStats:
    """Requests of one front door (one FastAPI app)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: dict[tuple, int] = {}
        self.latency: dict[str, Histogram] = {}
        self.inflight = 0

    def begin(self) -> None:
        with self.lock:
            self.inflight += 1

    def end(self) -> None:
        with self.lock:
            self.inflight -= 1

    def record(self, route: str, method: str, status: int, seconds: float | None) -> None:
        with self.lock:
            k = (route, method, str(status))
            self.requests[k] = self.requests.get(k, 0) + 1
            if seconds is not None:
                hist = self.latency.get(route)
                if hist is None:
                    hist = self.latency[route] = Histogram(BUCKETS["megflow_http_request_seconds"])
                hist.observe(seconds)

    def export(self, out) -> None:
        with self.lock:
            for (route, method, status), n in self.requests.items():
                out.counter("megflow_http_requests", {"route": route, "method": method, "status": status}, n)
            for route, hist in self.latency.items():
                out.hist("megflow_http_request_seconds", {"route": route}, hist)
            out.gauge("megflow_http_requests_in_flight", {}, self.inflight)


class MetricsMiddleware:
    """Pure ASGI middleware (it never buffers a body: streaming responses stream on)."""

    def __init__(self, app, stats: HttpStats):
        self.app, self.stats = app, stats

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        stats, t0 = self.stats, time.perf_counter()
        state = {"status": 500, "latency": None}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["latency"] = time.perf_counter() - t0
            await send(message)

        stats.begin()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            stats.end()
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            stats.record(route, scope.get("method", "GET"), state["status"], state["latency"])


def instrument(app) -> None:
    """Count ``app``'s requests (when this process samples metrics) and serve ``/metrics`` and
    ``/dashboard`` on it (they answer 404 with the reason when metrics are off)."""
    from . import sampler
    from .routes import add_routes

    if sampler.SAMPLER is not None:
        stats = HttpStats()
        sampler.SAMPLER.add_http(stats)
        app.add_middleware(MetricsMiddleware, stats=stats)
    add_routes(app, _worker_view)


def _worker_view():
    """(run directory, app) of this worker's run, or None when metrics are off."""
    from . import sampler

    s = sampler.SAMPLER
    return None if s is None else (s.dir, s.worker.app)
