"""One node instance inside a worker: its plugin object, ports, resources and life cycle.

Life cycle (MegFlow's actor model): built with ``factory(name, args)`` when its graph instance is
installed; ports and resources set as attributes; on start, ``exec()`` runs once for a node
without inputs, otherwise repeatedly until every input has ended and the plugin has seen the end.
When it ends (normally, by drain, or by an exception) its inputs give back their credits, its
outputs are closed (downstream sees the end), the plugin object is released (``__del__`` runs) and
the end is reported to the instance's creator, with the failure as data if there was one.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections import deque

from ..errors import Cancelled, MegFlowError, NodeFailure
from ..registry import DICT, LIST
from .channels import Inbox
from .hub import Future
from .ports import InputPort, OutputPort, RoutedOutputPort, close_dests, deliver
from .threads import off_hub, run_on_hub

log = logging.getLogger("megflow_mp")
TOOK_MAX = 1024  # envelopes of one exec call an exception can be charged to


class LazyResource:
    """What ``self.<resource>`` is: the resource object, built on first use in this process."""

    __slots__ = ("_get",)

    def __init__(self, get):
        object.__setattr__(self, "_get", get)

    def __getattr__(self, name):
        return getattr(self._get(), name)

    def __getitem__(self, key):
        return self._get()[key]

    def __len__(self):
        return len(self._get())

    def __iter__(self):
        return iter(self._get())

    def __call__(self, *args, **kwargs):
        return self._get()(*args, **kwargs)


class NodeInstance:
    def __init__(self, worker, spec, decl, creator: int):
        self.worker, self.hub = worker, worker.hub
        self.spec, self.decl, self.creator = spec, decl, creator
        self.inst, self.top, self.path = spec.inst, spec.top, spec.path
        self.shared = decl.shared
        self.inboxes: list[Inbox] = []
        self.route_inputs: dict[int, set] = {}
        self.flushed: dict[int, set] = {}
        self.pending_closes: list[int] = []
        self.routed: dict[tuple, RoutedOutputPort] = {}
        self.task = None
        self.ended = False
        self.threaded = decl.ntype.exclusive  # exclusive: exec runs on a thread of its own
        self.cancelled = False
        self._warned: set[str] = set()
        # (partial_id, route, origin) of what ``exec`` received since it was last called: an exception
        # there fails those envelopes' requests or subgraph instances when it can, instead of the node
        self.took: deque = deque(maxlen=TOOK_MAX)
        self.failed_routes: set[int] = set()
        self.route_creators: dict[int, int] = {}
        ports = {p.name: self._input(p) for p in decl.ntype.inputs}
        self.outputs = {p.name: self._output(p) for p in decl.ntype.outputs}
        ports.update(self.outputs)
        self.obj = decl.ntype.factory(decl.name, dict(spec.args))
        for name, port in ports.items():
            setattr(self.obj, name, port)
        for name, binding in spec.res.items():
            setattr(self.obj, name, LazyResource(lambda b=binding: worker.resource(b, self.top)))
        if decl.ntype.builtin and hasattr(self.obj, "bind_runtime"):
            self.obj.bind_runtime(worker, self)

    # -- building ports ---------------------------------------------------------------------------------
    def _inbox(self, ispec) -> Inbox:
        if ispec is None:
            inbox = Inbox(-1, 1, 0, self.worker.transport.post, self.hub)
        else:
            # credits go out at once: a sender waiting for them must not wait for our next batch
            inbox = Inbox(ispec.chan, ispec.cap, ispec.senders, self.worker.transport.send_now, self.hub,
                          self.shared, self.worker.owing)
            self.worker.inboxes[ispec.chan] = inbox
            for route in self.worker.early_closes.pop(ispec.chan, ()):
                inbox.close_one(route)
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
        if self.shared:
            tags = self.worker.app_shared_output_tags(self.decl.name, p.name) if p.kind != "single" else [None]
            ports = {t: self.routed.setdefault((p.name, t), RoutedOutputPort(self, p.name if t is None else f"{p.name}:{t}"))
                     for t in tags}
            if p.kind == LIST:
                return [ports[str(i)] for i in range(len(ports))]
            return ports if p.kind == DICT else ports[None]
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
    def install_route(self, r, creator: int) -> None:
        self.route_creators[r.route] = creator
        need = self.route_inputs.setdefault(r.route, set())
        for chan, n in r.inputs.items():
            inbox = self.worker.inboxes[chan]
            inbox.route_left[r.route] = inbox.route_left.get(r.route, 0) + n
            need.add(chan)
        for (port, tag), dests in r.outputs.items():
            self.routed[(port, tag)].routes.setdefault(r.route, []).extend(dests)

    def on_flush(self, route: int, chan: int) -> None:
        got = self.flushed.setdefault(route, set())
        got.add(chan)
        if got >= self.route_inputs.get(route, set()):
            self.flushed.pop(route, None)
            self.pending_closes.append(route)

    def flush_barriers(self) -> None:
        """Close this route's outputs once its end passed every input (called at the next recv)."""
        while self.pending_closes:
            route = self.pending_closes.pop(0)
            self.route_inputs.pop(route, None)
            self.route_creators.pop(route, None)
            self.failed_routes.discard(route)
            self._close_route(route)

    def _close_route(self, route: int) -> None:
        for port in self.routed.values():
            dests = port.routes.pop(route, [])
            close_dests(self.worker, [(d, d.route) for d in dests])
            self.worker.forget({d.chan for d in dests if not d.shared})

    def deliver(self, dests, envelope) -> None:
        deliver(self.worker, dests, envelope)

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

        threading.Thread(target=body, name=f"mf:{self.path}", daemon=True).start()
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
                contained = isinstance(exc, Exception) and self.contain(failure)
                del exc
                if not contained:
                    if self.creator != self.worker.supervisor:  # the supervisor prints the static ones
                        log.error("%s", failure.describe())
                    return failure
                log.error("%s", failure.describe())

    def _exec_all(self) -> None:
        took = self.took
        if not self.inboxes:
            self.obj.exec()
        elif len(self.inboxes) == 1:
            inbox = self.inboxes[0]
            while True:
                took.clear()
                self.obj.exec()
                if self.pending_closes:
                    self.flush_barriers()
                if inbox.closed and inbox.eof_seen and not inbox.queue:
                    break
        else:
            inboxes = self.inboxes
            while True:
                took.clear()
                self.obj.exec()
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
        if not took or not all(origin is not None or (self.shared and self.route_creators.get(route, supervisor)
                                                      != supervisor) for _, route, origin in took):
            return False
        for pid, route, origin in took:
            if origin is not None:
                self.worker.control(origin[0], "request_failed", origin[1], pid, failure)
            elif route not in self.failed_routes:
                self.failed_routes.add(route)
                self._close_route(route)  # the instance's nodes after this one see the end
                self.worker.control(self.route_creators[route], "route_failed", route, failure)
        return True

    def end(self, failure=None) -> None:
        if self.ended:
            return
        self.ended = True
        for inbox in self.inboxes:
            inbox.drop()
        self.flush_barriers()
        targets = []
        for port in self.output_ports():
            if isinstance(port, OutputPort):
                targets += port.close_targets()
            else:
                for route, dests in port.routes.items():
                    targets += [(d, d.route) for d in dests]
                port.routes.clear()
        close_dests(self.worker, targets)
        self.obj = None  # the plugin object is finalised here (``__del__``)
        self.worker.node_ended(self, failure)
