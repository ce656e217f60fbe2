"""One node instance inside a worker: its plugin object, ports, resources and life cycle.

Life cycle (MegFlow's actor model): built with ``factory(name, args)`` when its graph instance is
installed; ports and resources set as attributes; on start, ``exec()`` runs once for a node
without inputs, otherwise repeatedly until every input has ended and the plugin has seen the end.
When it ends (normally, by drain, or by an exception) its inputs give back their credits, its
outputs are closed (downstream sees the end), the plugin object is released (``__del__`` runs) and
the end is reported to the instance's creator, with the failure as data if there was one.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import traceback
from collections import deque

from ..errors import Cancelled, MegFlowError, NodeFailure
from ..observe.counters import COUNTS
from ..registry import DICT, LIST
from .channels import Inbox
from .hub import Future
from .ports import InputPort, OutputPort
from .shared import SharedRoutes
from .threads import off_hub, run_on_hub

log = logging.getLogger("megflow_mp")
TOOK_MAX = 1024  # envelopes of one exec call an exception can be charged to


class NodeInstance:
    def __init__(self, worker, spec, decl, creator: int):
        self.worker, self.hub = worker, worker.hub
        self.spec, self.decl, self.creator = spec, decl, creator
        self.inst, self.top, self.path = spec.inst, spec.top, spec.path
        self.shared = decl.shared
        self.inboxes: list[Inbox] = []
        self.routes = SharedRoutes(self, worker.channels)
        self.pending_closes = self.routes.pending  # read on every recv: one attribute away
        self.failed_routes = self.routes.failed
        self.task = None
        self.ended = False
        self.threaded = decl.ntype.exclusive  # exclusive: exec runs on a thread of its own
        self.cancelled = False
        self._warned: set[str] = set()
        # (partial_id, route, origin) of what ``exec`` received since it was last called: an exception
        # there fails those envelopes' requests or subgraph instances when it can, instead of the node
        self.took: deque = deque(maxlen=TOOK_MAX)
        ports = {p.name: self._input(p) for p in decl.ntype.inputs}
        self.outputs = {p.name: self._output(p) for p in decl.ntype.outputs}
        ports.update(self.outputs)
        self.obj = decl.ntype.factory(decl.name, dict(spec.args))
        for name, port in ports.items():
            setattr(self.obj, name, port)
        for name, binding in spec.res.items():
            setattr(self.obj, name, worker.resources.bind(binding, self.top))
        if decl.ntype.builtin and hasattr(self.obj, "bind_runtime"):
            self.obj.bind_runtime(worker, self)

    # -- building ports ---------------------------------------------------------------------------------
    def _inbox(self, ispec) -> Inbox:
        if ispec is None:  # nothing connected: ended from the start
            inbox = Inbox(-1, 1, 0, self.worker.transport.post, self.hub)
        else:
            inbox = self.worker.channels.open_inbox(ispec.chan, ispec.cap, ispec.senders, self.shared, ispec.procs)
        self.inboxes.append(inbox)
        return inbox

    def _input(self, p):
        given = self.spec.inputs.get(p.name)
        if p.kind == LIST:
            given = given or {}
            size = max((int(t) + 1 for t in given), default=0)
            return [InputPort(self, self._inbox(given.get(str(i))), f"{p.name}:{i}") for i in range(size)]
        if p.kind == DICT:
            return {t: InputPort(self, self._inbox(s), f"{p.name}:{t}") for t, s in (given or {}).items()}
        return InputPort(self, self._inbox(given), p.name)

    def _output(self, p):
        given = self.spec.outputs.get(p.name)
        if self.shared:  # the planner lists the tags (an empty list each): destinations come by route
            if p.kind == LIST:
                return [self.routes.port(p.name, str(i)) for i in range(len(given or {}))]
            if p.kind == DICT:
                return {t: self.routes.port(p.name, t) for t in (given or {})}
            return self.routes.port(p.name, None)
        if p.kind == LIST:
            given = given or {}
            size = max((int(t) + 1 for t in given), default=0)
            return [OutputPort(self, given.get(str(i), []), f"{p.name}:{i}") for i in range(size)]
        if p.kind == DICT:
            return {t: OutputPort(self, d, f"{p.name}:{t}") for t, d in (given or {}).items()}
        return OutputPort(self, given or [], p.name)

    def output_ports(self):
        for port in self.outputs.values():
            if isinstance(port, list):
                yield from port
            elif isinstance(port, dict):
                yield from port.values()
            else:
                yield port

    # -- shared-node routes --------------------------------------------------------------------------------
    def flush_barriers(self) -> None:
        """Close each route whose end passed every input (called at the next recv)."""
        self.routes.flush()

    def on_flush(self, route: int, chan: int) -> None:
        self.routes.on_flush(route, chan)

    def warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.error(message)

    # -- running ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self.task = self.hub.spawn(self.run_threaded if self.threaded else self.run)

    def is_cancelled(self) -> bool:
        return self.cancelled

    def cancel(self) -> None:
        """Stop a source (drain): raise Cancelled at its next blocking call."""
        self.cancelled = True
        if not self.threaded and self.task is not None and not self.task.dead:
            self.hub.throw(self.task, Cancelled())

    def run(self) -> None:
        self.end(self.loop())

    def run_threaded(self) -> None:
        """``exclusive = True`` (MegFlow ran such nodes on a thread pool): ``exec`` runs on its own
        thread, so a blocking call there stalls no other instance; its port calls go through the hub."""
        done = Future(self.hub)

        def body():
            failure = self.loop()
            self.hub.call_soon_threadsafe(done.set, failure)

        # in this task's context: plugin code on the thread finds its worker (api.create_future, ...)
        threading.Thread(target=contextvars.copy_context().run, args=(body,), name=f"mf:{self.path}",
                         daemon=True).start()
        self.end(done.wait())

    def loop(self):
        """Call ``exec`` until the inputs ended; return the failure (as data) or None.

        An exception on envelopes that can fail alone (see :meth:`contain`) is reported for them and
        ``exec`` goes on being called; any other ends the node."""
        while True:
            try:
                self._exec_all()
                return None
            except Cancelled:
                return None
            except BaseException as exc:  # noqa: BLE001 - a plugin failure ends this node only
                # the engine's own errors (a source that cannot be opened, ...) are one line; a plugin's
                # exception keeps its traceback, which its author needs
                tb = str(exc) if isinstance(exc, MegFlowError) else "".join(
                    traceback.format_exception(type(exc), exc, exc.__traceback__))
                failure = NodeFailure(self.path, f"instance {self.inst}", type(exc).__name__, tb)
                COUNTS.errors += 1  # metrics
                contained = isinstance(exc, Exception) and self.contain(failure)
                del exc
                if not contained:
                    if self.creator != self.worker.supervisor:  # the supervisor prints the static ones
                        log.error("%s", failure.describe())
                    return failure
                log.error("%s", failure.describe())

    def _exec_all(self) -> None:
        """Call ``exec`` until the inputs ended; after each call, what it sent and the transport
        still holds goes out if it waited longer than ``STALE`` (the node computed after sending)."""
        took, flush_stale = self.took, self.worker.transport.flush_stale
        if not self.inboxes:
            self.obj.exec()
        elif len(self.inboxes) == 1:
            inbox = self.inboxes[0]
            while True:
                took.clear()
                self.obj.exec()
                flush_stale()
                if self.pending_closes:
                    self.flush_barriers()
                if inbox.closed and inbox.eof_seen and not inbox.queue:
                    break
        else:
            inboxes = self.inboxes
            while True:
                took.clear()
                self.obj.exec()
                flush_stale()
                if self.pending_closes:
                    self.flush_barriers()
                if all(i.finished() for i in inboxes):
                    break

    def contain(self, failure: NodeFailure) -> bool:
        """Fail only what ``exec`` received in the call that raised, when each of those envelopes
        can fail alone: an HTTP request (its ``origin``) is answered with the error; in a shared
        node, a dynamic subgraph instance (its route) gets the error and this node serves it no
        more. Returns False (the node ends) when nothing was received or one envelope has neither."""
        if self.threaded and off_hub(self.hub):
            return run_on_hub(self.hub, self.contain, failure)
        took = list(self.took)
        self.took.clear()
        supervisor = self.worker.supervisor
        if not took or not all(origin is not None or (self.shared and self.routes.can_fail(route, supervisor))
                               for _, route, origin in took):
            return False
        for pid, route, origin in took:
            if origin is not None:
                self.worker.control(origin[0], "request_failed", origin[1], pid, failure)
            else:
                creator = self.routes.fail(route)  # the instance's nodes after this one see the end
                if creator is not None:
                    self.worker.control(creator, "route_failed", route, failure)
        return True

    def end(self, failure=None) -> None:
        if self.ended:
            return
        self.ended = True
        for inbox in self.inboxes:
            inbox.drop()
        self.flush_barriers()
        for port in self.output_ports():
            if isinstance(port, OutputPort):
                port.close()
        self.routes.close_all()
        self.obj = None  # the plugin object is finalised here (``__del__``)
        self.worker.node_ended(self, failure)
