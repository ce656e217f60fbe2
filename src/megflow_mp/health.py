"""Health for orchestrators: ``GET /healthz`` and ``GET /readyz``.

Served by every front door (ImageServer, BytesServer, VideoServer), from the moment its port is
bound (while the other workers are still building their nodes), and by ``megflow-mp run
--metrics-port N`` (the supervisor).

Contract:

* ``GET /healthz``: ``200 {"status": "ok"}`` whenever the process serves HTTP. It says nothing
  about the graph: a liveness probe.
* ``GET /readyz``: ``200 {"ready": true, "workers": N}`` (N: the app's worker processes) when

  - every worker is up: forked, and its nodes built. A node's models are loaded in its
    ``__init__``, which runs while its worker installs, so a worker that reported its nodes
    installed has loaded them ("models loaded"). A worker without static nodes (one that only
    hosts nodes of subgraph instances) is up once forked;
  - the app has started, and is not restarting a worker, draining, failing or stopping;
  - the server that answers runs its routes (a front door answers health probes before its node
    starts; until then its other routes answer ``503 {"detail": "starting"}`` with ``Retry-After``);
  - every ready check of the app returns no reason (see below).

  Otherwise ``503 {"ready": false, "reasons": ["worker of node 'det' (main/det, replica 0, pid
  812) is building its nodes (loading their models)", ...]}``: one line per reason.

Where the facts come from (event-driven, nothing polls): the supervisor computes a :class:`Report`
(:class:`SupervisorHealth`) after each control message it handles and each it broadcasts (a
worker installed, restarting, back, gone; the start, a drain, the end) and, when it changed, sends
it to every worker as the control message ``health``; each worker keeps the latest in :data:`APP`
(:class:`AppHealth`), which its front doors read. The metrics server reads the supervisor's own
report. A process that has no report yet (the first moments of a run, or a supervisor that sends
none) is not ready and says why.

Ready checks: a node adds its own conditions to the app it serves: ``app.state.ready_checks`` is a
list of functions ``fn() -> list[str]`` (the reasons it is not ready; empty: ready), called for
each ``/readyz`` on a thread of the server (not the hub, not the event loop): they must return
quickly and only read state. A check that raises makes the app not ready, its exception is the
reason.
"""

from __future__ import annotations

import asyncio
from typing import Callable, NamedTuple

NO_REPORT = "no report on the workers yet (the app is starting)"
STARTING = "starting"


class Report(NamedTuple):
    """What the supervisor knows about the app's readiness: its worker count, and why it is not
    ready (empty: ready)."""

    workers: int
    reasons: tuple = ()


class AppHealth:
    """This process's copy of the supervisor's latest :class:`Report` (None: none came yet). Set on
    the worker's hub (control message ``health``), read by the HTTP threads: one attribute, swapped
    whole."""

    def __init__(self):
        self.report: Report | None = None

    def update(self, report) -> None:
        self.report = Report(*report)


APP = AppHealth()


def readiness(report: Report | None, checks=(), before=()) -> tuple[int, dict]:
    """``(status, body)`` of ``/readyz``: ``before`` (reasons of the server itself), then the
    report's, then those of each check in ``checks``."""
    reasons = [str(r) for r in before]
    if report is None:
        reasons.append(NO_REPORT)
    else:
        reasons.extend(report.reasons)
    for check in list(checks):
        try:
            reasons.extend(str(r) for r in (check() or ()))
        except Exception as exc:  # noqa: BLE001 - a broken check: not ready, and it says why
            name = getattr(check, "__qualname__", repr(check))
            reasons.append(f"ready check {name} raised {type(exc).__name__}: {exc}")
    if reasons:
        return 503, {"ready": False, "reasons": reasons}
    return 200, {"ready": True, "workers": report.workers}


# -- the routes ------------------------------------------------------------------------------------------------
HEALTHY_EXAMPLE = {"status": "ok"}
READY_EXAMPLE = {"ready": True, "workers": 3}
NOT_READY_EXAMPLE = {"ready": False, "reasons": [
    "worker of node 'det' (main/det, replica 0, pid 8125) is building its nodes (loading their models)"]}
HEALTHZ_DOC = {"summary": "Liveness: the process serves HTTP",
               "description": "Always 200 while the process answers; it says nothing about the graph."}
READYZ_DOC = {"summary": "Readiness: every worker up, models loaded, the app started",
              "description": "200 when every worker of the app is up (its nodes built: their models "
                             "loaded), the app has started and is not restarting a worker, draining or "
                             "stopping, and every ready check a node added passes; else 503 with the "
                             "reasons, one line each."}


def _models():
    from pydantic import BaseModel, Field

    class Healthy(BaseModel):
        status: str = Field(description="always \"ok\"")

    class Ready(BaseModel):
        ready: bool = Field(description="true")
        workers: int = Field(description="the app's worker processes, all up")

    class NotReady(BaseModel):
        ready: bool = Field(description="false")
        reasons: list[str] = Field(description="why it is not ready, one line each")

    return Healthy, Ready, NotReady


def add_routes(app, report: Callable[[], Report | None], before: Callable[[], list] = lambda: []) -> None:
    """``GET /healthz`` and ``GET /readyz`` on the FastAPI ``app``, documented in its OpenAPI
    document. ``report()`` gives the supervisor's :class:`Report` (None: none yet); ``before()``
    the reasons of the server itself; the reasons of ``app.state.ready_checks`` (created empty
    here when missing) come last."""
    from fastapi.responses import JSONResponse

    if not hasattr(app.state, "ready_checks"):
        app.state.ready_checks = []
    Healthy, Ready, NotReady = _models()

    @app.get("/healthz", response_model=Healthy, **HEALTHZ_DOC,
             responses={200: {"description": "the process serves HTTP",
                              "content": {"application/json": {"example": HEALTHY_EXAMPLE}}}})
    async def healthz():
        return JSONResponse(HEALTHY_EXAMPLE)

    @app.get("/readyz", response_model=Ready, **READYZ_DOC,
             responses={200: {"description": "ready: every worker up, the app started",
                              "content": {"application/json": {"example": READY_EXAMPLE}}},
                        503: {"model": NotReady, "description": "not ready: the reasons",
                              "content": {"application/json": {"example": NOT_READY_EXAMPLE}}}})
    async def readyz():
        def evaluate():
            return readiness(report(), app.state.ready_checks, before())

        status, body = await asyncio.get_running_loop().run_in_executor(None, evaluate)
        return JSONResponse(body, status_code=status)


async def answer(scope, receive, send, status: int, body: dict, headers: dict | None = None) -> None:
    """Send a JSON response on a raw ASGI connection (a front door before its app runs)."""
    from starlette.responses import JSONResponse

    await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)


# -- the supervisor's side ---------------------------------------------------------------------------------------
class SupervisorHealth:
    """The readiness of a supervisor's app (:class:`~megflow_mp.supervisor.Supervisor` or a
    subclass), recomputed from its state on each :meth:`event` (on its hub's thread); the latest
    :class:`Report` is :attr:`report` (read by the metrics server's thread) and goes to every
    worker running (control message ``health``) when it changed."""

    def __init__(self, supervisor):
        self.sup = supervisor
        self.left = {p: len(items) for p, items in supervisor.items.items()}  # installs still to report
        self.report: Report | None = None

    def event(self, msg: tuple) -> None:
        sup = self.sup
        if msg[0] == "installed" and sup.phase == "install" and len(msg) > 2 and msg[2] in self.left:
            self.left[msg[2]] -= 1
        report = self.compute()
        if report == self.report:
            return
        self.report = report
        if sup.phase == "exit" or sup.transport is None:
            return  # the workers are leaving: nobody asks them any more
        for proc in range(sup.index):
            if proc not in sup.exited:
                sup.control(proc, "health", tuple(report))
        sup.transport.flush_all()

    def compute(self) -> Report:
        sup = self.sup
        if sup.phase == "exit":
            return Report(sup.index, ("the app is stopping",))
        reasons = []
        if sup.failures:
            reasons.append("the app failed: " + sup.failures[0].splitlines()[0])
        elif sup.interrupts:
            reasons.append("the app is draining: it was asked to stop")
        if sup.phase == "install":
            building = [p for p in range(sup.index) if self.left.get(p, 0) > 0]
            reasons += [f"worker of node {sup.describe(p)} is building its nodes (loading their models)"
                        for p in building]
            if not reasons:
                reasons.append("the app has not started yet")
        if sup.phase == "run":
            alive = set(sup.pidfds) | set(getattr(sup, "remote_alive", ()))  # a cluster's other machines
            for proc in range(sup.index):
                if proc in sup.exited:
                    reasons.append(f"worker of node {sup.describe(proc)} is gone")
                elif proc not in alive:
                    reasons.append(f"worker of node {sup.describe(proc)} is down (it will be restarted)")
                elif proc in sup.restarting and sup.items.get(proc):  # one without static nodes: up once forked
                    reasons.append(f"worker of node {sup.describe(proc)} is restarting: building its nodes "
                                   f"again (loading their models)")
        return Report(sup.index, tuple(reasons))


def report_of(supervisor) -> Report | None:
    """The latest report of ``supervisor`` (None: no event yet)."""
    health = getattr(supervisor, "health", None)
    return None if health is None else health.report
