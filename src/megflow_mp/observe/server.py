"""``megflow-mp run --metrics-port N``: ``/metrics``, ``/dashboard``, ``/healthz`` and ``/readyz``
served by the supervisor (``/readyz`` answers from the supervisor's own readiness report,
:mod:`megflow_mp.health`).

For apps without a front door (batch graphs), or to watch an app on a port of its own. A FastAPI
app on uvicorn, on a thread of the supervisor, started once the workers are forked and stopped when
the run ends. Its socket was bound by :func:`.settings.configure` (a port in use fails the command
before anything starts). With ``--metrics-auth`` (:attr:`.settings.Settings.auth`) every route but
the health probes takes the app's tokens (:mod:`megflow_mp.auth`: GET needs a viewer, ``/login``
for browsers); without it, the port is open, as a Prometheus server inside the network expects.
"""

from __future__ import annotations

import asyncio
import logging
import threading

log = logging.getLogger("megflow_mp")


class MetricsServer:
    def __init__(self, sock, view, report=lambda: None, tokens=None):
        """``view()``: (run directory, app) as :func:`.routes.add_routes` takes it; ``report()``:
        the supervisor's :class:`~megflow_mp.health.Report` (None: none yet); ``tokens``: the
        tokens file every route but the health probes requires (None: open)."""
        import uvicorn
        from fastapi import FastAPI

        from .. import health
        from .routes import add_routes

        app = FastAPI(title="megflow-mp metrics", docs_url=None, redoc_url=None)
        add_routes(app, view)
        health.add_routes(app, report)
        self.guard = None
        if tokens:
            from ..auth import Guard, protect

            self.guard = Guard(tokens)
            protect(app, self.guard)
        self.sock = sock
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self._serve, name="megflow-metrics-http", daemon=True)

    def _serve(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:  # noqa: BLE001 - the app goes on without its metrics page
            log.error("metrics server stopped: %s", exc)

    def start(self) -> None:
        self.thread.start()
        host, port = self.sock.getsockname()[:2]
        auth = f" (auth: tokens of {self.guard.verifier.path})" if self.guard is not None else ""
        log.info("metrics on http://%s:%d/metrics, dashboard on http://%s:%d/dashboard%s", host, port, host, port,
                 auth)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()
