"""The supervisor: forks one worker per node replica, runs the app to its end, cleans up.

Contract of :func:`run_app`: returns the exit code (0 success, 1 a node failed or a worker died,
130 stopped by a second Ctrl-C). It owns every child: workers die with it (PDEATHSIG), it is a
child subreaper so processes that plugins fork are reparented to it, and on any end (leaving the
``with Supervisor(app)`` block) it stops the workers: ``exit`` (each closes its channels and
leaves), then after ``GRACE`` seconds SIGTERM to those still running, after ``GRACE`` more SIGKILL,
waiting on their pidfds (no polling), and kills every remaining descendant. Shared memory is
memfd-only: nothing can be left in ``/dev/shm``, and what this process mapped is freed with it.

Phases: install (every worker builds its static node instances and reports) -> start -> run until
every static non-shared node ended -> ``close_shared`` -> shared nodes end -> ``exit``.
Ctrl-C/SIGTERM: ``drain`` (sources stop, the rest finishes what is queued); a second one kills.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import uuid

from .graph import App
from .observe import begin_run, end_run
from .plan import MAIN, InstancePlan, static_items
from .restarts import RestartBudget
from .runtime.channels import CTRL
from .runtime.hub import Hub
from .runtime.transport import Transport, listen

log = logging.getLogger("megflow_mp")
GRACE = 3.0  # seconds a worker has to leave after ``exit``, then again after SIGTERM


class Supervisor:
    """Runs one app: :meth:`run` is ``with self:`` ``spawn`` -> ``launch`` -> ``finish``, with
    Ctrl-C/SIGTERM handled; leaving the block is :meth:`shutdown`. A program that embeds a graph
    (:mod:`megflow_mp.program`) calls the phases itself and takes part in the app as this process
    (see ``arena`` and ``main_plan``)."""

    arena = None  # this process's shared-memory arena, when it sends or receives messages itself
    health = None  # the app's readiness (megflow_mp.health.SupervisorHealth), from the first event on

    def __init__(self, app: App, drain_timeout: float = 30.0):
        self.app = app
        self.run_id = uuid.uuid4().hex[:12]
        self.index = app.nworkers
        self.drain_timeout = drain_timeout
        self.hub: Hub | None = None  # from spawn on
        self.transport: Transport | None = None
        self.listener = None
        self.items: dict[int, list] = {}
        self.static_count = self.shared_count = self.expected_installs = 0
        self.drain_timer = None
        self.pids: dict[int, int] = {}
        self.pidfds: dict[int, int] = {}
        self.failures: list[str] = []
        self.installed = 0
        self.ended_static: set = set()
        self.ended_shared: set = set()
        self.budgets: dict[int, RestartBudget] = {}  # proc -> the restarts its worker spent (restarts.py)
        self.restarting: set[int] = set()
        self.pending: dict[int, object] = {}  # proc -> the timer of its restart (its backoff)
        self.exited: set[int] = set()
        self.interrupts = 0
        self.phase = "install"

    # -- processes ----------------------------------------------------------------------------------------
    def fork_workers(self, items: dict[int, list]) -> None:
        self.items = items
        self.listener = listen(self.run_id, self.index)
        for i in range(self.index):
            self.fork_worker(i, listen(self.run_id, i))

    def fork_worker(self, i: int, listener, restarted: bool = False) -> None:
        pid = fork_worker(self.app, i, self.run_id, listener, self.items[i], restarted, close=(self.listener,))
        self.pids[i] = pid
        if self.hub is not None:  # a restart: the first workers are watched once the hub exists
            self.watch(i)

    def restart_worker(self, proc: int) -> None:
        self.fork_worker(proc, listen(self.run_id, proc), restarted=True)

    def watch(self, proc: int) -> None:
        fd = os.pidfd_open(self.pids[proc])
        self.pidfds[proc] = fd
        self.hub.selector.register(fd, 1, lambda m, p=proc: self.on_exit(p))

    def control(self, proc: int, *msg) -> None:
        self.transport.post(proc, (CTRL, pickle.dumps(msg, protocol=5)))

    def broadcast(self, *msg) -> None:
        for i in range(self.index):
            if i not in self.exited:
                self.control(i, *msg)
        self.transport.flush_all()
        self.health_event(msg)

    def health_event(self, msg: tuple) -> None:
        """A control message was handled or broadcast, or a worker ended: the app's readiness is
        computed again, and sent to the workers when it changed (:mod:`megflow_mp.health`)."""
        if self.health is None:
            from .health import SupervisorHealth

            self.health = SupervisorHealth(self)
        self.health.event(msg)

    # -- events ------------------------------------------------------------------------------------------------
    def on_records(self, src, records) -> None:
        for rec in records:
            if rec[0] == CTRL:
                self.on_control(src, pickle.loads(rec[1]))

    def on_control(self, src, msg: tuple) -> None:
        getattr(self, "on_" + msg[0])(src, *msg[1:])
        self.health_event(msg)

    def on_installed(self, src, top, proc, error) -> None:
        if error:
            if "\n" in error.rstrip():  # a plugin's exception: its traceback helps its author
                self.fail(f"node of worker {self.describe(proc)} could not be built:\n{error.rstrip()}")
            else:  # an expected failure (MegFlowError): one line that says what to do
                self.fail(f"node {self.describe(proc, brief=True)} could not start: {error}")
        if proc in self.restarting:
            self.restarting.discard(proc)
            for top, _, _ in self.items[proc]:
                self.control(proc, "start", top)
            return
        self.installed += 1

    def on_ended(self, src, top, path, failure) -> None:
        if failure is not None:
            self.fail(failure.describe())
        # sets, not counts: a restarted worker reports its nodes' ends again
        (self.ended_shared if top == 0 else self.ended_static).add((src, path))

    def fail(self, reason: str) -> None:
        if reason not in self.failures:
            self.failures.append(reason)
            print(f"[megflow-mp] error: {reason}", file=sys.stderr, flush=True)

    def describe(self, proc: int, brief: bool = False) -> str:
        decl, replica = self.app.procs[proc]
        name = decl.split("/", 1)[1] if not decl.startswith("@/") else decl[2:]
        if brief:
            return f"'{name}' ({decl})"
        return f"'{name}' ({decl}, replica {replica}, pid {self.pids.get(proc)})"

    def on_exit(self, proc: int) -> None:
        fd = self.pidfds.pop(proc)
        self.hub.selector.unregister(fd)
        os.close(fd)
        _, status = os.waitpid(self.pids[proc], 0)
        self.worker_gone(proc, exit_reason(status))
        self.health_event(("worker_exit", proc))

    def worker_gone(self, proc: int, why: str) -> None:
        """Worker ``proc`` ended (``why``: "was killed by SIGKILL", ...): start it again when its
        node's restart policy and budget allow (after the budget's backoff, on a hub timer), else
        report it and let its peers know (:mod:`megflow_mp.restarts`)."""
        if self.phase == "exit":
            self.exited.add(proc)
            return
        budget = self.budget(proc)
        if self.phase != "run" or self.interrupts:  # starting, or draining: nothing is restarted
            self.gone_for_good(proc, why)
            return
        delay = budget.take(why)
        if delay is None:
            self.gone_for_good(proc, why + budget.why_not(why))
            return
        policy = budget.policy
        log.warning("worker of node %s %s; restarting it (%d of %d)%s [%s]", self.describe(proc), why,
                    budget.recent(), policy.limit, f" in {delay:g} s" if delay else "", policy.describe())
        if delay:
            self.pending[proc] = self.hub.call_later(delay, self.restart_now, proc, why)
        else:
            self.restart_now(proc, why)

    def budget(self, proc: int) -> RestartBudget:
        """The restart budget of worker ``proc`` (made on its first end)."""
        if proc not in self.budgets:
            self.budgets[proc] = RestartBudget(self.app.proc_policy(proc))
        return self.budgets[proc]

    def restart_now(self, proc: int, why: str) -> None:
        """Start worker ``proc`` again (its backoff is over), unless the app is ending meanwhile."""
        self.pending.pop(proc, None)
        if self.phase == "exit":
            self.exited.add(proc)
            return
        if self.phase != "run" or self.interrupts:
            self.gone_for_good(proc, why + "; not started again: the app is stopping")
            return
        self.restarting.add(proc)
        self.restart_worker(proc)
        self.broadcast("peer_restarted", proc)

    def gone_for_good(self, proc: int, why: str) -> None:
        """Worker ``proc`` will not come back: its peers stop waiting for it and the app fails."""
        self.exited.add(proc)
        self.broadcast("peer_died", proc)  # its senders raise PeerDied instead of waiting for credit
        self.fail(f"worker of node {self.describe(proc)} {why}")

    def on_signal(self, signum) -> None:
        self.interrupts += 1
        if self.interrupts == 1 and self.phase == "run":
            print(f"[megflow-mp] {signal.Signals(signum).name}: draining (again to stop at once)", file=sys.stderr,
                  flush=True)
            self.broadcast("drain")
            self.drain_timer = self.hub.call_later(self.drain_timeout, self.on_drain_timeout)

    def on_drain_timeout(self) -> None:
        if self.phase == "run":
            self.fail(f"drain did not finish within {self.drain_timeout:g} s")

    # -- running ---------------------------------------------------------------------------------------------------
    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def run(self) -> int:
        with self:
            self.spawn()
            old = {s: signal.signal(s, lambda n, f: self.hub.call_soon_threadsafe(self.on_signal, n))
                   for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                self.launch()
                self.finish()
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
        if self.interrupts >= 2:
            return 130
        return 1 if self.failures else 0

    def main_plan(self) -> InstancePlan | None:
        """The main graph's plan (None: the default of :func:`static_items`)."""
        return None

    def new_hub(self) -> Hub:
        """The hub this supervisor runs on (released by :meth:`release`)."""
        return Hub()

    def spawn(self) -> None:
        """Fork the workers (each installs its part of the static graph) and start listening."""
        items, self.static_count, self.shared_count = static_items(self.app, self.main_plan())
        self.expected_installs = sum(len(v) for v in items.values())
        log.info("starting %d worker processes for %s", self.index, self.app.file)
        self.fork_workers(items)
        self.hub = self.new_hub()
        self.transport = Transport(self.hub, self.run_id, self.index, self.listener, self.arena, self.on_records)
        for proc in self.pids:
            self.watch(proc)
        begin_run(self)  # metrics: the run directory, --metrics-port (megflow_mp.observe)

    def launch(self) -> None:
        """Wait until every worker installed its nodes, then start them (unless one failed)."""
        self.wait(lambda: self.installed >= self.expected_installs)
        if not self.failures:
            self.phase = "run"
            self.broadcast("start", 0)
            self.broadcast("start", MAIN)

    def finish(self) -> None:
        """Wait until the static nodes ended, then end the shared ones (stops early on a failure)."""
        if not self.failures and self.interrupts < 2:
            self.wait(lambda: len(self.ended_static) >= self.static_count)
        if not self.failures and self.interrupts < 2:
            self.broadcast("close_shared")
            self.wait(lambda: len(self.ended_shared) >= self.shared_count)

    def wait(self, cond) -> None:
        """Run the hub until ``cond()``, a failure, a second interrupt or the drain's timeout (each
        of them an event on the hub: nothing is polled)."""
        self.hub.run_until(lambda: bool(self.failures) or self.interrupts >= 2 or cond())

    def shutdown(self) -> None:
        """Stop every worker and free what this process holds; idempotent. ``exit`` first (workers
        leave on their own), SIGTERM after ``GRACE`` seconds, SIGKILL after ``GRACE`` more."""
        if self.phase == "exit":
            return
        self.phase = "exit"
        if self.drain_timer is not None:
            self.drain_timer.cancel()
        for proc, timer in list(self.pending.items()):  # restarts waiting for their backoff: not any more
            timer.cancel()
            self.exited.add(proc)
        self.pending.clear()
        if self.transport is None:  # spawning failed before the workers were watched
            for pid in self.pids.values():
                _kill_and_reap(pid)
            self.release()
            return
        self.broadcast("exit")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.hub.run_until(self.all_gone, timeout=GRACE):
                self.signal_workers(sig)
        self.hub.run_until(self.all_gone)
        self.hub.poll_nowait()  # what the workers wrote before they left (their last ends and failures)
        self.transport.close()
        end_run(self)
        self.release()

    def all_gone(self) -> bool:
        """No worker of this app is running any more."""
        return not self.pidfds

    def signal_workers(self, sig: int) -> None:
        """Send ``sig`` to every worker still running."""
        signal_all([self.pids[proc] for proc in self.pidfds], sig)

    def release(self) -> None:
        """The workers are gone: close the hub and kill what is left below this process (plugin children)."""
        if self.hub is not None:
            self.hub.close()
        kill_descendants()


def fork_worker(app: App, i: int, run_id: str, listener, items, restarted: bool = False, close=(),
                parent: int | None = None) -> int:
    """Fork the worker of process ``i`` (it listens on ``listener``, installs ``items`` and reports to
    the supervisor, process ``app.nworkers``); returns its pid. The child closes the sockets in
    ``close`` (its parent's), this process closes ``listener``. The worker dies with this process,
    or with ``parent`` when given: a subreaper above this process that adopts it once this process
    exits (:mod:`megflow_mp.forker`)."""
    from .runtime.worker import worker_main

    adopted = parent is not None and parent != os.getpid()
    parent = os.getpid() if parent is None else parent
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for sock in close:
            sock.close()
        worker_main(app, i, run_id, listener, app.nworkers, parent, items, restarted, adopted=adopted)
    listener.close()
    return pid


def signal_all(pids, sig: int) -> None:
    """Send ``sig`` to each of ``pids`` (those already gone are skipped)."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def exit_reason(status: int) -> str:
    """How a process ended, from its wait status: "was killed by SIGKILL", "exited with code 1"."""
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.WEXITSTATUS(status)}"


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc; empty if it is gone)."""
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def kill_descendants() -> None:
    """SIGKILL and reap every process below this one (plugin children reparented to us)."""
    me = os.getpid()
    for _ in range(50):
        kids = children_of(me)
        if not kids:
            return
        stack = list(kids)
        while stack:
            pid = stack.pop()
            stack += children_of(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in kids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def become_subreaper() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    except OSError:
        pass


def run_app(app: App, drain_timeout: float = 30.0) -> int:
    become_subreaper()
    return Supervisor(app, drain_timeout).run()
