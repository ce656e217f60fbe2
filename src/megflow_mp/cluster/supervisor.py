"""The supervisor of a cluster run (``megflow-mp run CONFIG --ray ADDRESS``).

The same :class:`~megflow_mp.supervisor.Supervisor` phases (install, start, run, close shared
nodes, exit), over machines: the layout (:mod:`.placement`) says which machine runs each worker
process; this process forks the workers of its own machine (machine 0) through a forker started
before Ray's threads (:mod:`megflow_mp.forker`), and a Ray actor on every other machine used starts
that machine's host (:mod:`.host`), which forks the workers there (through a forker of its own).
Every machine has a bridge (:mod:`.bridge`; here it runs on this process's hub), so processes talk
to each other by index wherever they run, and control messages (install, start, ended, exit) reach
remote workers like local ones.

Faults: a remote worker that ends is reported by its host (``exited``) and handled like a local one
(restarted when its node's restart policy allows it, :mod:`megflow_mp.restarts`, else the app fails
naming it). A machine lost (its raylet or host killed, the link broken) ends every worker there: the
app fails with one line naming the machine and its nodes, the others are stopped, nothing hangs. At
the end the hosts are stopped, the actors killed, the placement groups removed: no process of the
app is left on any machine.
"""

from __future__ import annotations

import logging
import socket
import sys

from ..errors import ClusterError
from ..plan import NodeSpec, static_items
from ..runtime.transport import listen
from ..supervisor import Supervisor
from .agent import NODE_ENV
from .source import AppSource, fingerprint

log = logging.getLogger("megflow_mp")


def connect_ray(address: str) -> None:
    """Connect to the Ray cluster at ``address`` (``auto``: the one this machine belongs to, or
    ``RAY_ADDRESS``; ``local``: start a one-machine cluster for this run)."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install 'megflow-mp[ray]'") from None
    if ray.is_initialized():
        return
    why = unreachable(address)
    if why:  # Ray itself would retry for minutes before saying so
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {why} (is `ray start --head` running "
                           f"there?)")
    try:
        if address == "local":
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {exc}".splitlines()[0]) from None


def unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why a ``host:port`` address cannot be reached (no TCP connection within ``timeout``), or None
    (reachable, or another form: ``auto``, ``local``, ``ray://...``, which Ray resolves itself)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "/" in host:
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


class ClusterSupervisor(Supervisor):
    """Runs ``app`` on the Ray cluster at ``address``; ``source`` is how each machine loads it."""

    def __init__(self, app, source: AppSource, address: str = "auto", drain_timeout: float = 30.0,
                 place_timeout: float = 60.0):
        super().__init__(app, drain_timeout)
        self.source, self.address, self.place_timeout = source, address, place_timeout
        self.placement = None
        self.forker = None
        self.where: dict[int, int] = {}
        self.agents: dict[int, object] = {}
        self.bridge = None
        self.remote_alive: set[int] = set()
        self.lost: set[int] = set()

    # -- start ---------------------------------------------------------------------------------------------
    def spawn(self) -> None:
        from ..forker import Forker

        # before Ray starts its threads: this machine's workers are forked from a process with none
        self.items, self.static_count, self.shared_count = static_items(self.app)
        self.forker = Forker(self.app, self.run_id, self.items)

        import ray

        from ..codec import Codec
        from ..observe import begin_run
        from ..runtime.transport import Transport
        from ..shm import Arena
        from .agent import remote_agent
        from .bridge import Bridge
        from .host import HostSpec
        from .placement import Placement

        connect_ray(self.address)
        self.placement = Placement(self.app, self.place_timeout)
        self.where = where = self.placement.where
        self.expected_installs = sum(len(v) for v in self.items.values())
        remote_procs = {p for p, m in where.items() if m != 0}
        self.listener = listen(self.run_id, self.index)
        proxies = {p: listen(self.run_id, p) for p in remote_procs}
        for proc in range(self.index):
            if where[proc] == 0:
                self.pids[proc] = self.fork_local(proc)
        spec = dict(source=self.source, fingerprint=fingerprint(self.app), where=where, ip="", parent=0)
        for m in self.placement.used:
            if m != 0:
                self.agents[m] = remote_agent(self.placement.machines[m].node_id)
        started = {m: a.start.remote(HostSpec(run_id=f"{self.run_id}-{m}", me=m, **spec))
                   for m, a in self.agents.items()}
        addresses = {}
        for m, ref in started.items():
            try:
                addresses[m] = tuple(ray.get(ref, timeout=120))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(getattr(exc, "cause", None), ClusterError) else exc
                raise ClusterError(f"{self.machine(m)}: {cause}".splitlines()[0]) from None
            except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
                raise ClusterError(f"{self.machine(m)} did not start its host: {exc}".splitlines()[0]) from None
        self.arena = Arena(self.index, self.index + 1)
        self.hub = self.new_hub()
        self.transport = Transport(self.hub, self.run_id, self.index, self.listener, self.arena, self.on_records)
        ip = ray.util.get_node_ip_address()
        self.bridge = Bridge(self.hub, self.arena, Codec(self.arena), self.run_id, 0, where, ip, self.on_lost,
                             self.on_host, listeners=proxies)
        addresses[0] = self.bridge.address
        self.bridge.connect(addresses)
        ray.get([a.connect.remote(addresses) for a in self.agents.values()], timeout=60)
        self.remote_alive = {p for p in remote_procs if p < self.index}
        for proc in self.pids:
            self.watch(proc)
        for line in self.layout_lines():
            log.info("%s", line)
        begin_run(self)

    def fork_local(self, proc: int, restarted: bool = False) -> int:
        """Start worker ``proc`` on this machine (through the forker); returns its pid."""
        from ..forker import ForkError

        try:  # NODE_ENV: the Ray node id of this machine, for the worker
            return self.forker.fork(proc, restarted, {NODE_ENV: self.placement.machines[0].node_id})
        except ForkError as exc:
            raise ClusterError(str(exc)) from None

    def machine(self, m: int) -> str:
        return self.placement.machines[m].describe(m)

    def layout_lines(self) -> list[str]:
        """One line per machine used: which nodes (replicas) run there."""
        out = []
        for m in self.placement.used:
            names = [f"{self.app.procs[p][0]}#{self.app.procs[p][1]}" for p in sorted(self.where)
                     if self.where[p] == m and p < self.index]
            out.append(f"{self.machine(m)}: {', '.join(names) or 'the supervisor only'}")
        return out

    def describe(self, proc: int, brief: bool = False) -> str:
        text = super().describe(proc, brief)
        m = self.where.get(proc, 0)
        return text if m == 0 or brief else f"{text[:-1]}, on {self.machine(m)})"

    def launch(self) -> None:
        """Tell each worker which processes share its machine (senders prefer them), then start."""
        self.hub.run_until(lambda: bool(self.failures) or self.interrupts >= 2
                           or self.installed >= self.expected_installs)
        for proc in range(self.index):
            self.send_near(proc)
        super().launch()

    def send_near(self, proc: int) -> None:
        m = self.where[proc]
        self.control(proc, "near", [p for p, q in self.where.items() if q == m and p < self.index], self.machine(m))

    # -- events --------------------------------------------------------------------------------------------
    def on_host(self, machine: int, msg: tuple) -> None:
        if msg[0] == "exited":
            self.remote_alive.discard(msg[1])
            self.worker_gone(msg[1], msg[2])
            self.health_event(("worker_exit", msg[1]))

    def restart_worker(self, proc: int) -> None:
        m = self.where[proc]
        if m == 0:
            self.pids[proc] = self.fork_local(proc, restarted=True)
            self.watch(proc)
        elif self.bridge.send_host(m, ("fork", proc)):
            self.remote_alive.add(proc)
        self.send_near(proc)

    def on_lost(self, machine: int) -> None:
        """The link with ``machine`` ended: every worker there is gone. When each of them is a
        replica of a node that keeps replicas elsewhere (a shared model, a VideoServer's stream
        runners, per-stream nodes: ``cloned`` over the machines), the app goes on without them:
        the others take their work, the streams that ran there end (``/list`` says why) and their
        ends count as done. Otherwise the app fails naming the machine and its nodes."""
        if machine in self.lost:
            return
        self.lost.add(machine)
        gone = sorted(p for p in self.remote_alive if self.where[p] == machine)
        self.remote_alive.difference_update(gone)
        self.exited.update(gone)
        if self.phase == "exit":
            return
        why = f"{self.machine(machine)} was lost"
        for proc in gone:
            self.broadcast("peer_died", proc, why)
        alone = [p for p in gone if not self.replicas_left(p)]
        if alone or not gone:
            names = ", ".join(sorted({self.describe(p, brief=True) for p in alone or gone})) or "none running"
            self.fail(f"{why} (its Ray node, its host or the link to it ended); its nodes ended: {names}")
            return
        for proc in gone:  # their nodes' ends will never be reported: they count as done
            for top, _, items in self.items[proc]:
                ended = self.ended_shared if top == 0 else self.ended_static
                ended.update((proc, spec.path) for spec in items if isinstance(spec, NodeSpec))
        names = ", ".join(sorted({f"{self.describe(p, brief=True)} replica {self.app.procs[p][1]}" for p in gone}))
        log.warning("%s (its Ray node, its host or the link to it ended): its replicas ended (%s); the app goes "
                    "on with their replicas on the other machines", why, names)

    def replicas_left(self, proc: int) -> list[int]:
        """The replicas of ``proc``'s node still running (on machines not lost)."""
        decl = self.app.procs[proc][0]
        return [p for p in self.app.decl_procs[decl] if p not in self.exited]

    # -- end ----------------------------------------------------------------------------------------------------
    def all_gone(self) -> bool:
        return not self.pidfds and not self.remote_alive

    def signal_workers(self, sig: int) -> None:
        super().signal_workers(sig)
        for m in self.agents:
            if m not in self.lost:
                self.bridge.send_host(m, ("signal", sig))

    def release(self) -> None:
        """Stop the hosts (and their workers), kill the actors, free the placement groups."""
        try:
            import ray

            if self.bridge is not None:
                self.bridge.close()
            if self.agents:
                try:
                    ray.get([a.stop.remote() for a in self.agents.values()], timeout=30)
                except Exception:  # noqa: BLE001 - a lost machine's actor is dead already
                    pass
                for a in self.agents.values():
                    ray.kill(a)
            if self.placement is not None:
                self.placement.release()
            ray.shutdown()
        finally:
            if self.forker is not None:
                self.forker.close()
            super().release()


def run_cluster_app(app, source: AppSource, address: str, drain_timeout: float = 30.0,
                    place_timeout: float = 60.0) -> int:
    from ..supervisor import become_subreaper

    become_subreaper()
    try:
        return ClusterSupervisor(app, source, address, drain_timeout, place_timeout).run()
    except KeyboardInterrupt:  # Ctrl-C while starting on the machines: everything started is stopped
        print("[megflow-mp] interrupted while starting on the cluster; stopped", file=sys.stderr, flush=True)
        return 130
