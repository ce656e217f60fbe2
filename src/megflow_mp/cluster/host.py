"""The host of one machine of a cluster run: ``python -m megflow_mp.cluster.host``, started by the
machine's Ray actor (:mod:`.agent`), which it dies with.

Protocol with the actor, on the host's stdin/stdout:

1. stdin: a pickled :class:`HostSpec`. The host loads the app from its source, checks the
   fingerprint, listens for every process that runs elsewhere (its bridge's proxies), forks the
   workers placed on this machine, and answers ``LISTEN <ip> <port>`` (its bridge's TCP address), or
   ``ERROR <message>`` and exits 2, on the answer pipe (the fd given as its argument; its stdout
   and stderr are the actor's, which Ray shows on the driver's console).
2. stdin: one line, the JSON ``{machine: [ip, port]}`` of every bridge: the host opens its links;
   from then on everything goes over them (:mod:`.bridge`).
3. stdin closed (the actor stops it), or the driver's machine lost: the host stops its workers
   (SIGTERM, then SIGKILL after a grace period), kills what is left below it and exits.

Messages with the supervisor (machine 0), over the bridge: ``("exited", proc, why)`` for each worker
that ends here; from it ``("fork", proc)`` (restart that worker) and ``("signal", signum)``.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import threading
from dataclasses import dataclass

from .source import AppSource

GRACE = 3.0


@dataclass
class HostSpec:
    source: AppSource
    fingerprint: str
    run_id: str  # this machine's transport namespace
    me: int  # this machine's index
    where: dict  # process index -> machine index
    ip: str  # the address the bridge listens on
    parent: int  # the actor's pid: the host dies with it


class Host:
    def __init__(self, spec: HostSpec, app):
        from ..codec import Codec
        from ..forker import Forker
        from ..plan import static_items
        from ..runtime.hub import Hub
        from ..runtime.transport import listen
        from ..shm import Arena

        self.spec, self.app = spec, app
        self.items, _, _ = static_items(app)
        self.forker = Forker(app, spec.run_id, self.items)  # before any thread exists in this process
        self.pids: dict[int, int] = {}
        self.pidfds: dict[int, int] = {}
        # the proxies listen before any worker exists (nothing a worker sends may find no one)
        listeners = {p: listen(spec.run_id, p) for p, m in spec.where.items() if m != spec.me}
        for proc in sorted(p for p, m in spec.where.items() if m == spec.me and p < app.nworkers):
            self.pids[proc] = self.forker.fork(proc)
        self.hub = Hub()
        self.arena = Arena(app.nworkers, app.nworkers + 1)
        self.codec = Codec(self.arena)
        from .bridge import Bridge

        self.bridge = Bridge(self.hub, self.arena, self.codec, spec.run_id, spec.me, spec.where, spec.ip,
                             on_lost=self.on_lost, on_host=self.on_host, listeners=listeners)
        self.done = False
        for proc in list(self.pids):
            self.watch(proc)

    def watch(self, proc: int) -> None:
        fd = os.pidfd_open(self.pids[proc])
        self.pidfds[proc] = fd
        self.hub.selector.register(fd, 1, lambda m, p=proc: self.on_exit(p))

    def on_exit(self, proc: int) -> None:
        from ..supervisor import exit_reason

        fd = self.pidfds.pop(proc)
        self.hub.selector.unregister(fd)
        os.close(fd)
        _, status = os.waitpid(self.pids[proc], 0)
        self.bridge.send_host(0, ("exited", proc, exit_reason(status)))

    def on_host(self, machine: int, msg: tuple) -> None:
        if msg[0] == "fork":
            proc = msg[1]
            self.pids[proc] = self.forker.fork(proc, restarted=True)
            self.watch(proc)
        elif msg[0] == "signal":
            self.signal(msg[1])

    def on_lost(self, machine: int) -> None:
        if machine == 0:  # the driver is gone: nothing here can go on
            self.done = True

    def signal(self, sig: int) -> None:
        from ..supervisor import signal_all

        signal_all([self.pids[proc] for proc in self.pidfds], sig)

    def serve(self) -> None:
        """Run until stdin closes (the actor stops this host) or the driver's machine is lost."""
        def wait_stdin():
            while os.read(0, 1 << 16):  # unbuffered: no lock held at interpreter exit
                pass
            self.hub.call_soon_threadsafe(self.stop)

        threading.Thread(target=wait_stdin, name="megflow-host-stdin", daemon=True).start()
        self.hub.run_until(lambda: self.done)
        self.stop()

    def stop(self) -> None:
        self.done = True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.hub.run_until(lambda: not self.pidfds, timeout=GRACE):
                self.signal(sig)
        self.hub.run_until(lambda: not self.pidfds, timeout=GRACE)
        self.forker.close()


def main(out) -> int:
    """The host; ``out`` is the answer pipe to the actor."""
    from ..runtime.worker import _die_with_parent
    from ..supervisor import become_subreaper, kill_descendants
    from .source import fingerprint

    spec: HostSpec = pickle.load(sys.stdin.buffer)
    _die_with_parent(spec.parent)
    become_subreaper()
    try:
        app = spec.source.load()
    except Exception as exc:  # noqa: BLE001 - reported to the driver in one line
        print(f"ERROR machine {spec.me} cannot load the app: {exc}".replace("\n", " "), file=out, flush=True)
        return 2
    if fingerprint(app) != spec.fingerprint:
        print(f"ERROR machine {spec.me} built a different graph from {spec.source.config} (other plugin "
              f"files or versions on this machine?)", file=out, flush=True)
        return 2
    host = Host(spec, app)
    print(f"LISTEN {host.bridge.address[0]} {host.bridge.address[1]}", file=out, flush=True)
    line = sys.stdin.buffer.readline()
    if not line:
        host.stop()
        kill_descendants()
        return 0
    host.bridge.connect({int(k): tuple(v) for k, v in json.loads(line).items()})
    try:
        host.serve()
    finally:
        host.bridge.close()
        kill_descendants()
    return 0


if __name__ == "__main__":
    protocol = os.fdopen(int(sys.argv[1]), "w")  # the answers to the actor (stdout stays the app's)
    os.set_inheritable(protocol.fileno(), False)
    code = main(protocol)
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown while link threads still read
