"""A worker process: hosts the instances of one node declaration (one replica of it).

The worker owns its hub, transport, shared-memory arena and credit table, installs node instances
when asked (the supervisor for the static graph, a creator node for a dynamic subgraph instance),
starts them, and reports each node's end to the instance's creator. Control messages are pickled
tuples inside CTRL records:

``install(top, creator, items)`` -> ``installed(top, proc, error)``; ``start(top)``; ``destroy(top)``;
``ended(top, path, failure)`` to the creator; ``route_failed(top, failure)`` to the creator (a shared
node raised on an envelope of that instance and serves it no more); ``request_failed(key, partial_id,
failure)`` to an HTTP server's process (a node raised on its request); ``drain`` (stop sources),
``close_shared`` (app end), ``exit``; ``wake(future_id, value)`` for cross-process futures;
``health(report)``: the app's readiness, for this process's front doors (:mod:`..health`).
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import pickle
import signal
import sys
import time
import traceback
from contextvars import ContextVar

from ..codec import Codec
from ..errors import MegFlowError, NodeFailure, PeerDied
from ..observe import watch_worker
from ..plan import Dest, IdAllocator, NodeSpec, RouteSpec, plan_instance
from ..shm import Arena
from .channels import CTRL, Channels
from .hub import Future, Hub
from . import malloc
from .instance import Instance
from .node import NodeInstance
from .ports import OutputPort
from .resources import Resources
from .transport import Transport

log = logging.getLogger("megflow_mp")

_CURRENT: ContextVar = ContextVar("megflow_mp_worker", default=None)


def current_worker() -> "Worker | None":
    """The Worker the calling code runs under: set in the worker's main thread by
    :func:`worker_main`, inherited by every hub task (:meth:`Hub.spawn` copies the spawner's context)
    and by the thread of an ``exclusive`` node; None in a program, a test or a plugin's own thread."""
    return _CURRENT.get()


class Worker:
    def __init__(self, app, index: int, run_id: str, listener, supervisor: int, restarted: bool = False):
        self.app, self.index, self.supervisor = app, index, supervisor
        self.hub = Hub()
        self.arena = Arena(index, supervisor + 1)
        self.codec = Codec(self.arena)
        self.transport = Transport(self.hub, run_id, index, listener, self.arena, on_peer_lost=self.peer_lost)
        # a restarted worker keeps CLOSEs that come before their channel: its peers replay them
        self.channels = Channels(self.hub, self.transport, self.codec, on_control=self.on_control,
                                 keep_early_closes=restarted)
        self.transport.on_records = self.channels.on_records
        self.nodes: dict[int, list[NodeInstance]] = {}
        self.resources = Resources(app.registry)
        self.children: dict[int, Instance] = {}  # instances this process created, by id
        self.installing: dict[int, tuple] = {}
        self.futures: dict[int, Future] = {}
        self.requesters: dict[int, object] = {}  # key -> fail(partial_id, failure) of an HTTP server here
        self._future_ids = itertools.count(1)
        self.ids = IdAllocator(index)
        self.exiting = False
        self.exit_hooks: list = []  # run when the supervisor says exit (front doors answer what waits)
        self.handlers: dict[str, object] = {}  # name -> fn(src, *args) for ``call`` (see :meth:`call`)
        self.calls: dict[int, set] = {}  # proc -> ids of the futures waiting for its answers
        self.peer_hooks: list = []  # fn(proc, restarted, why) when a peer died (restarted: started again)
        self.machine: str | None = None  # on a cluster: this process's machine, as /list shows it

    # -- messaging --------------------------------------------------------------------------------------
    def control(self, proc: int, *msg) -> None:
        self.transport.post(proc, (CTRL, pickle.dumps(msg, protocol=5)))

    def on_control(self, src: int, msg: tuple) -> None:
        getattr(self, "on_" + msg[0])(src, *msg[1:])

    # -- hosting --------------------------------------------------------------------------------------------
    def install(self, top: int, creator: int, items) -> str | None:
        """Build the node instances and routes of graph instance ``top`` hosted here."""
        built = []
        try:
            for item in items:
                if isinstance(item, NodeSpec):
                    built.append(NodeInstance(self, item, self.app.decls[item.decl], creator))
                elif isinstance(item, RouteSpec):
                    self.shared_node.routes.install(item, creator)
        except Exception as exc:  # noqa: BLE001 - reported to the creator as data
            for node in built:
                node.end()
            if isinstance(exc, MegFlowError):  # an expected failure (port taken, model missing): one line
                return str(exc)
            return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.nodes.setdefault(top, []).extend(built)
        return None

    def on_install(self, src, top, creator, items) -> None:
        self.control(src, "installed", top, self.index, self.install(top, creator, items))

    def on_start(self, src, top) -> None:
        for node in self.nodes.get(top, []):
            if node.task is None and not node.ended:
                node.start()

    def on_destroy(self, src, top) -> None:
        for node in self.nodes.pop(top, []):
            for inbox in node.inboxes:
                self.channels.remove_inbox(inbox)
            self.channels.forget({d.chan for port in node.output_ports() if isinstance(port, OutputPort)
                                  for d in port.dests if not d.shared})
        self.resources.release(top)
        malloc.trim_soon()  # what the instance's nodes freed goes back to the system

    @property
    def shared_node(self) -> NodeInstance:
        return self.nodes[0][0]

    def node_ended(self, node: NodeInstance, failure) -> None:
        self.control(node.creator, "ended", node.top, node.path, failure)

    def on_drain(self, src) -> None:
        for nodes in self.nodes.values():
            for node in nodes:
                source = not node.inboxes or getattr(node.decl.ntype.factory, "drain_as_source", False)
                if source and node.task is not None and not node.task.dead:
                    node.cancel()

    def on_close_shared(self, src) -> None:
        for node in self.nodes.get(0, []):
            for inbox in node.inboxes:
                inbox.close()

    def on_near(self, src, procs, machine=None) -> None:
        """On a cluster: ``procs`` run on this process's machine (``machine`` describes it); a send
        prefers their replicas and the instances created here keep their nodes there."""
        self.channels.credits.near = frozenset(procs)
        self.machine = machine

    def on_peer_died(self, src, proc, why: str | None = None) -> None:
        """Worker ``proc`` died and is not restarted (the supervisor says so, with ``why``; e.g. its
        machine was lost while the app goes on): senders waiting on it raise PeerDied, and each
        instance created here with nodes there fails (those nodes count as ended)."""
        self.channels.peer_died(proc)
        for top, child in list(self.children.items()):
            specs = [s for s in child.plan.hosts(self.app).get(proc, ()) if isinstance(s, NodeSpec)]
            if not specs:
                continue
            reason = f"its process ({self.app.procs[proc][0]}, replica {self.app.procs[proc][1]}) is gone" + (
                f": {why}" if why else "")
            child.failed(NodeFailure(specs[0].path, child.path, "WorkerLost", reason))
            child.ended.update((proc, spec.path) for spec in specs)
            if len(child.ended) >= child.expected:
                self._finish(top, child)
        self._calls_lost(proc)
        for hook in self.peer_hooks:
            hook(proc, False, why)

    # -- calls between nodes' processes -----------------------------------------------------------------------
    def call(self, proc: int, name: str, *args, reply: bool = True) -> Future | None:
        """Call handler ``name`` of worker ``proc`` with ``args`` (from the hub); the Future gets its
        return value, or the exception it raised (None when ``reply`` is False: nothing comes back).
        A handler is registered by a node in ``handlers``; a missing one raises KeyError there."""
        fut, fid = self.new_future() if reply else (None, 0)
        if reply:
            self.calls.setdefault(proc, set()).add(fid)
        self.control(proc, "call", name, fid, args)
        self.transport.flush(proc)
        return fut

    def on_call(self, src, name, fid, args) -> None:
        """Run the handler as a task (it may wait: a returned Future is waited for) and answer."""

        def run():
            try:
                value = self.handlers[name](src, *args)
                if isinstance(value, Future):
                    value = value.wait()
            except Exception as exc:  # noqa: BLE001 - the caller gets it
                value = exc
            if fid:
                self.control(src, "wake", fid, value)
                self.transport.flush(src)

        self.hub.spawn(run)

    def _calls_lost(self, proc: int) -> None:
        """Worker ``proc`` died: the calls waiting for its answers get PeerDied."""
        for fid in self.calls.pop(proc, ()):
            fut = self.futures.pop(fid, None)
            if fut is not None:
                fut.set(PeerDied(f"worker {proc} died before it answered"))

    def peer_lost(self, proc: int) -> None:
        """A batch to ``proc`` could not be written: it died. A node whose restart policy never
        starts it again (``restart = 0``, or none in an app without a front door) never comes back,
        so its senders raise PeerDied now; one that may be restarted (``restart = N``, or the
        default policy of an app with a front door: :meth:`App.policy <megflow_mp.graph.App.policy>`)
        is waited for: ``peer_restarted``, or ``peer_died`` when the supervisor does not start it
        again (its budget spent, or it ended in a way its policy does not cover)."""
        if proc < len(self.app.procs) and not self.app.proc_policy(proc).restarts:
            self.channels.peer_died(proc)

    def on_exit(self, src) -> None:
        self.exiting = True

    def on_health(self, src, report) -> None:
        """The supervisor's readiness report changed (:mod:`megflow_mp.health`): kept for the front
        doors of this process, whose ``/readyz`` answers from it."""
        from ..health import APP

        APP.update(report)

    # -- creating instances (creator side) ------------------------------------------------------------------
    def create_instance(self, graph: str, path: str, dyn, node, exits=None, on_failure=None) -> Instance:
        """Plan, install and start one instance of ``graph`` for ``node`` (the creator here), fed
        through ``dyn`` (its DynSpec); blocks the calling task until every host built its part.
        Raises RuntimeError (with the hosts' tracebacks) if one failed.

        ``exits`` names graph outputs whose results come back to this process: ``{output: cap}``
        (read with ``instance.results(output)``). See :mod:`.instance` for the handle's contract."""
        inst = self.ids()
        exit_chans = {name: (self.ids(), cap) for name, cap in (exits or {}).items()}
        exit_dests = {name: [Dest(chan, (self.index,), False, cap)] for name, (chan, cap) in exit_chans.items()}
        plan = plan_instance(self.app, graph, inst, self.ids, self.index, path, dyn.visible, dyn.args,
                             entry_senders=1, exit_dests=exit_dests, near=self.channels.credits.near)
        inboxes = {name: self.channels.open_inbox(chan, cap, plan.exits.get(name, 0),
                                                  procs=plan.exit_procs.get(name, ()))
                   for name, (chan, cap) in exit_chans.items()}
        hosts = plan.hosts(self.app)
        fut = Future(self.hub)
        self.installing[inst] = (set(hosts), [], fut)
        for proc, items in hosts.items():
            self.control(proc, "install", inst, self.index, items)
        errors = fut.wait() if hosts else []
        if errors:
            for proc in hosts:
                self.control(proc, "destroy", inst)
            for inbox in inboxes.values():
                self.channels.remove_inbox(inbox)
            raise RuntimeError(f"could not create {path}:\n" + "\n".join(errors))
        instance = Instance(self.channels, node, plan, dyn.port, plan.node_count(self.app), list(hosts), inboxes,
                            on_failure)
        self.children[inst] = instance
        for proc in hosts:
            self.control(proc, "start", inst)
        if instance.expected == 0:
            self._finish(inst, instance)
        return instance

    def on_peer_restarted(self, src, proc) -> None:
        """Worker ``proc`` died and was started again: reset the link, replay the ends we sent it,
        and install again the parts of our live dynamic instances it hosted."""
        self.channels.peer_restarted(proc)
        for top, child in self.children.items():
            items = child.plan.hosts(self.app).get(proc)
            if items:
                self.control(proc, "install", top, self.index, items)
                self.control(proc, "start", top)
        self._calls_lost(proc)
        for hook in self.peer_hooks:
            hook(proc, True, None)

    def on_installed(self, src, top, proc, error) -> None:
        if top not in self.installing:
            return  # a re-install on a restarted peer: nobody waits for it
        waiting, errors, fut = self.installing[top]
        waiting.discard(proc)
        if error:
            errors.append(error)
        if not waiting:
            del self.installing[top]
            fut.set(errors)

    def on_ended(self, src, top, path, failure) -> None:
        child = self.children.get(top)
        if child is None:
            return
        child.ended.add((src, path))  # a set: a restarted host reports its nodes' ends again
        if failure is not None:
            child.failed(failure)
        if len(child.ended) >= child.expected:
            self._finish(top, child)

    def on_route_failed(self, src, top, failure) -> None:
        child = self.children.get(top)
        if child is not None:
            child.failed(failure)

    def add_requester(self, fail) -> tuple[int, int]:
        """Register an HTTP server's ``fail(partial_id, failure)``; returns the ``origin`` its
        requests carry, so that a node raising on one reports it here."""
        key = len(self.requesters)
        self.requesters[key] = fail
        return (self.index, key)

    def on_request_failed(self, src, key, partial_id, failure) -> None:
        fail = self.requesters.get(key)
        if fail is not None:
            fail(partial_id, failure)

    def _finish(self, top: int, child: Instance) -> None:
        del self.children[top]
        self.channels.forget(child.channel_ids())
        for inbox in child.exits.values():  # the results port reads on what is queued
            self.channels.retire_inbox(inbox)
        for proc in child.hosts:
            self.control(proc, "destroy", top)
        child.done.set(child.failures)
        malloc.trim_soon()  # what the instance used here (a stream's decode threads) goes back to the system

    # -- futures ---------------------------------------------------------------------------------------------
    def new_future(self) -> tuple[Future, int]:
        fid = next(self._future_ids)
        fut = self.futures[fid] = Future(self.hub)
        return fut, fid

    def on_wake(self, src, fid, value) -> None:
        self.calls.get(src, set()).discard(fid)
        fut = self.futures.pop(fid, None)
        if fut is not None:
            fut.set(value)

    # -- main ------------------------------------------------------------------------------------------------
    def serve(self) -> None:
        self.hub.run_until(lambda: self.exiting)
        self.transport.flush_all()
        for hook in self.exit_hooks:
            hook()

    def close(self) -> None:
        """Close the sockets, the hub and the arena (its memory stays while views of it live).
        A worker process exits without it (``os._exit``); tests that build one in-process call it."""
        self.transport.close()
        self.hub.close()
        self.arena.close()


def _tune_gc() -> None:
    """Before serving: what startup built (modules, plugins, models) leaves the collector's view
    (``gc.freeze``), and young collections run every 20,000 allocations instead of 700. A worker
    allocates envelopes and task objects per message; collecting them that often cost several
    percent of a video worker's CPU. Cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _set_policy(factory) -> None:
    """Run this worker as ``SCHED_BATCH`` unless its node type says ``interactive = True`` (an HTTP
    front door answering clients). A batch process is never preempted by the wake-up of another one,
    only at the end of its time slice: on a machine with fewer cores than busy workers, a stage that
    sends to the next one and wakes it then goes on with its batch instead of being switched out
    after each message (a 5-process chain of Python nodes at ``cap = 16``, 2 cores: +25% envelopes/s,
    involuntary context switches 18,000 -> 500 per 100,000 envelopes). Threads the worker starts
    inherit the policy. Nothing changes where the machine has a core to spare."""
    if getattr(factory, "interactive", False):
        return
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError:  # not allowed here (a restricted container): the default policy
        pass


def _set_title(title: str) -> None:
    """Name the process (``ps``, ``top``, /proc/PID/comm): ``mf:<node>``, cut to 15 bytes."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, title.encode()[:15] + b"\0", 0, 0, 0)  # PR_SET_NAME
    except OSError:
        pass


def _die_with_parent(parent: int, adopted: bool = False) -> None:
    """Die (SIGKILL) when ``parent`` ends; exit now when it already has. ``adopted``: this process
    was forked by a child of ``parent`` that exits at once (:mod:`megflow_mp.forker`); it waits to
    be adopted first, as the death signal follows the parent of the moment."""
    if adopted:
        deadline = time.monotonic() + 5.0
        while os.getppid() != parent and time.monotonic() < deadline:
            time.sleep(0.0005)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent:
        os._exit(1)


def worker_main(app, index: int, run_id: str, listener, supervisor: int, parent: int, items,
                restarted: bool = False, adopted: bool = False) -> None:
    """Entry point in the forked child; never returns (``os._exit``). The worker dies with process
    ``parent`` (``adopted``: once that process adopted it, see :func:`_die_with_parent`)."""
    code = 0
    try:
        _die_with_parent(parent, adopted)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        decl, replica = app.procs[index]
        _set_title(f"mf:{decl.split('/', 1)[1]}")
        _set_policy(app.decls[decl].ntype.factory)
        worker = Worker(app, index, run_id, listener, supervisor, restarted)
        _CURRENT.set(worker)
        watch_worker(worker)  # metrics: a snapshot of this process every second (megflow_mp.observe)
        for top, creator, its in items:
            worker.control(supervisor, "installed", top, index, worker.install(top, creator, its))
        worker.transport.flush_all()
        _tune_gc()
        profile_dir = os.environ.get("MEGFLOW_MP_PROFILE")
        if profile_dir:  # a cProfile of each worker, for performance work: <dir>/<node>-<replica>.prof
            import cProfile

            os.makedirs(profile_dir, exist_ok=True)
            cProfile.runctx("worker.serve()", globals(), {"worker": worker},
                            os.path.join(profile_dir, f"{decl.replace('/', '.')}-{replica}.prof"))
        else:
            worker.serve()
    except BaseException:  # noqa: BLE001 - last resort: report and exit non-zero
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
