"""The supervisor of a graph that a program runs (:mod:`megflow_mp.program`), and the program's part in it.

:class:`ProgramHost` is a :class:`~megflow_mp.supervisor.Supervisor` whose process (the program's)
also takes part in the app as a worker does: it plans the main graph with this process as the
single sender of every graph input (``entry``: where each input delivers) and as the receiver of
every graph output (``exits``: an :class:`~megflow_mp.runtime.channels.Inbox` each), and it has its
own shared-memory arena, codec and :class:`~megflow_mp.runtime.channels.Channels` (``channels``:
the one send and close path), so arrays travel as in the rest of the app.

It runs on the hub of the program's thread, only while the program waits in a call of
:mod:`megflow_mp.program`. A failure throws :class:`~megflow_mp.errors.AppFailed` into the program's
tasks waiting on this app. Stopping kills the processes that plugins forked below the workers
(found before the workers exit; the program is no child subreaper), never other children of the
program.
"""

from __future__ import annotations

import os
import signal
import threading

from .codec import Codec
from .errors import AppFailed
from .plan import MAIN, Dest, IdAllocator, plan_instance
from .runtime.channels import Channels, Inbox
from .runtime.hub import Hub
from .shm import Arena
from .supervisor import Supervisor, _kill_and_reap, children_of

__all__ = ["ProgramHost"]


class ProgramHost(Supervisor):
    """Supervises one app for a program, on ``hub`` (the program thread's), and holds the program's
    ends of it: ``entry`` (graph input -> its destinations) and ``exits`` (graph output -> Inbox)."""

    def __init__(self, app, hub: Hub):
        super().__init__(app)
        self._hub = hub
        self.arena = Arena(self.index, self.index + 1)  # the workers' arenas count this process too
        self.codec = Codec(self.arena)
        # its transport comes with the workers (spawn); credits go out through it from then on
        self.channels = Channels(hub, None, self.codec, on_control=self.on_control)
        self.entry: dict[str, list] = {}
        self.exits: dict[str, Inbox] = {}
        self.leftovers: list = []

    def hub_of_thread(self) -> Hub | None:
        """The hub, when this thread may run it now (its own thread, outside its tasks)."""
        hub = self._hub
        return hub if threading.get_ident() == hub.thread_id and not hub.in_task() else None

    # -- the plan: inputs fed by this process, outputs delivered to it -----------------------------------------
    def main_plan(self):
        app, ids = self.app, IdAllocator(None)
        chans = {name: (ids(), cap) for name, (cap, _) in app.templates[app.main].outputs.items()}
        exit_dests = {name: [Dest(chan, (self.index,), False, cap)] for name, (chan, cap) in chans.items()}
        plan = plan_instance(app, app.main, MAIN, ids, self.index, app.main, entry_senders=1, exit_dests=exit_dests)
        self.entry = dict(plan.entry)
        for name, (chan, cap) in chans.items():
            self.exits[name] = self.channels.open_inbox(chan, cap, plan.exits.get(name, 0))
        return plan

    def new_hub(self) -> Hub:
        return self._hub

    def spawn(self) -> None:
        super().spawn()
        self.channels.transport = self.transport

    def has_credit(self, dests) -> bool:
        return self.channels.credits.has(dests)

    # -- records ------------------------------------------------------------------------------------------------
    def on_records(self, src, records) -> None:
        self.channels.on_records(src, records)

    def fail(self, reason: str) -> None:
        super().fail(reason)
        if self.phase == "exit":
            return
        hub = self._hub  # the program's tasks waiting on this app get the failure
        for inbox in self.exits.values():
            if inbox.waiter is not None:
                hub.throw(inbox.waiter, AppFailed(self.failures))
                inbox.waiter = None
        entry = {d.chan for dests in self.entry.values() for d in dests}
        self.channels.credits.throw_waiters(entry, AppFailed(self.failures))

    def fork_worker(self, i: int, listener, restarted: bool = False) -> None:
        super().fork_worker(i, listener, restarted)
        if restarted:  # a new process: our links to it start afresh, and it must see the ends we sent
            self.channels.peer_restarted(i)

    # -- the end -----------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the workers and free everything (from the hub's thread; elsewhere, kill them)."""
        if self.transport is None or self.hub_of_thread() is None:
            # spawning failed before the workers were watched, or not on the hub's thread
            for pid in self.pids.values():
                _kill_and_reap(pid)
            self.channels.close_hub()
            return
        self.shutdown()

    def shutdown(self) -> None:
        for inbox in self.exits.values():  # results nobody will read: their arrays are released
            inbox.drop()
        self.leftovers = _descendants([self.pids[p] for p in self.pidfds])  # plugins' children, before they lose their parent
        super().shutdown()

    def release(self) -> None:
        self.channels.close_hub()
        for pid, started in self.leftovers:
            if started is not None and _start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.arena.close()  # a no-op while the program still holds result arrays (they keep their memory)


def _start_time(pid: int):
    """The start time of ``pid`` (field 22 of /proc/PID/stat), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _descendants(pids: list[int]) -> list[tuple[int, str | None]]:
    """Every process below ``pids``, with its start time (so a reused pid is never killed)."""
    out, stack = [], list(pids)
    while stack:
        for child in children_of(stack.pop()):
            out.append((child, _start_time(child)))
            stack.append(child)
    return out
