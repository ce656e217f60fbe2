"""A real :class:`~megflow_mp.runtime.worker.Worker` in the test's process, for unit tests of the runtime.

The worker is built as ``worker_main`` builds it (hub, arena, codec, channels), then its transport
is replaced by a :class:`Recorder`: what it would send to other processes is kept as
``(proc, record)`` instead, and records from other processes are handed in with :meth:`InProc.feed`
/ :meth:`InProc.close_chan`. Code runs under the worker (``current_worker()``) through
:meth:`InProc.run`, which spawns tasks in the worker's context and runs its hub.
"""

from __future__ import annotations

import contextvars
import pickle
import uuid

from megflow_mp.config import load_config_string
from megflow_mp.envelope import Envelope
from megflow_mp.graph import build_app
from megflow_mp.plan import static_items
from megflow_mp.runtime import worker as worker_mod
from megflow_mp.runtime.channels import CLOSE, CTRL, DATA
from megflow_mp.runtime.transport import listen
from tests.support.isolation import run_tasks


class Recorder:
    """Stands in for a Transport: records what would be sent."""

    def __init__(self):
        self.records: list = []  # (proc, record)
        self.on_post = None  # the other processes, played by a test: on_post(proc, record)

    def post(self, proc, record, size=64, segments=()):
        self.records.append((proc, record))
        if self.on_post is not None:
            self.on_post(proc, record)

    def send_now(self, proc, record):
        self.post(proc, record)

    def flush(self, proc):
        pass

    def flush_all(self):
        pass

    def flush_stale(self):
        pass

    def reset_peer(self, proc):
        pass

    def close(self):
        pass

    def controls(self) -> list:
        """``(proc, msg)`` of every control message, unpickled."""
        return [(p, pickle.loads(r[1])) for p, r in self.records if r[0] == CTRL]

    def of(self, op) -> list:
        return [(p, r) for p, r in self.records if r[0] == op]


class InProc:
    """A worker hosting replica ``replica`` of node declaration ``decl`` of the app in ``config``."""

    def __init__(self, config: str, decl: str, registry, replica: int = 0):
        self.app = build_app(load_config_string(config), registry)
        self.index = self.app.decl_procs[decl][replica]
        run_id = uuid.uuid4().hex[:12]
        self.worker = worker_mod.Worker(self.app, self.index, run_id, listen(run_id, self.index), self.app.nworkers)
        self.worker.transport.close()
        self.sent = self.worker.transport = self.worker.channels.transport = Recorder()
        self.context = contextvars.copy_context()
        self.context.run(worker_mod._CURRENT.set, self.worker)

    def call(self, fn, *args):
        """``fn(*args)`` under the worker (in its context, unless already there)."""
        if worker_mod.current_worker() is self.worker:
            return fn(*args)
        return self.context.run(fn, *args)

    @property
    def supervisor(self) -> int:
        return self.app.nworkers

    def install_static(self) -> list:
        """Install this worker's part of the static graph (as at start-up); returns the errors."""
        items, _, _ = static_items(self.app)
        return [self.worker.install(top, creator, its) for top, creator, its in items[self.index]]

    def start(self, top: int) -> None:
        self.call(self.worker.on_start, self.supervisor, top)

    def nodes(self, top: int) -> dict:
        return {n.path: n for n in self.worker.nodes.get(top, [])}

    def feed(self, chan: int, *envelopes: Envelope, src: int = 0) -> None:
        """Records from process ``src``: each envelope as a DATA record of channel ``chan``."""
        records = [(DATA, chan, self.worker.codec.encode(e.to_tuple(), 1)[0]) for e in envelopes]
        self.call(self.worker.channels.on_records, src, records)

    def close_chan(self, chan: int, route=None, src: int = 0) -> None:
        self.call(self.worker.channels.on_records, src, [(CLOSE, chan, route)])

    def run(self, *fns, timeout: float = 10) -> None:
        """Run each function as a task of the worker's hub (in its context) until all returned."""
        self.call(lambda: run_tasks(self.worker.hub, *fns, timeout=timeout))

    def run_until(self, cond, timeout: float = 10) -> None:
        assert self.call(self.worker.hub.run_until, cond, timeout), "the hub did not get there in time"

    def decoded(self, op=DATA) -> list:
        """``(proc, chan, Envelope)`` of every DATA record sent."""
        return [(p, r[1], Envelope.from_tuple(self.worker.codec.decode(r[2]))) for p, r in self.sent.of(op)]

    def close(self) -> None:
        self.worker.close()
