"""When a worker that ended is started again: a node's restart policy, and the budget a worker spends.

Contract. Every node declaration has one :class:`RestartPolicy` (:meth:`App.policy
<megflow_mp.graph.App.policy>`), fixed when the config is loaded:

- ``restart = N`` on the node (N >= 1): a worker of it that ends while the app runs, however it
  ended (killed by a signal, or exited with a code), is started again, at most N times within any
  60 s (a sliding window: a restart older than 60 s no longer counts).
- ``restart = 0``: never started again; the app ends, naming the node.
- no ``restart``, in an app with a front door (a node type with ``interactive = True``: ImageServer,
  BytesServer, VideoServer, or a plugin class that says so): the default policy, a worker *killed
  by a signal* (SIGKILL, SIGSEGV, the OOM killer...) is started again, at most 5 times within any
  60 s. A worker that exited with a code (an exception that ended its process) is not: the app ends.
- no ``restart``, on a node that creates subgraph instances (VideoServer, VideoInput, DynDemux),
  in any app: never started again. The instances such a worker created live on in the other
  workers and are never destroyed (nothing ends them, so a drain then waits for them until its
  timeout), and the worker started in its place creates new ones under the same ids: restarting it
  cannot be made reliable here. ``restart = N`` still restarts it (what it created is left over).
- no ``restart``, in an app without a front door: never started again (a batch run ends with its
  error, as it always did).

Each worker process (one replica) has its own :class:`RestartBudget`. A restart waits a backoff
that grows with the restarts of the last 60 s: none for the first, then 0.5 s, 1 s, 2 s, 4 s, 8 s
(the cap); after 60 s without one the next is immediate again. The supervisor waits with a hub
timer, never by sleeping. A worker that ends once the budget is spent ends the app with an error
naming the node and the budget (:meth:`RestartBudget.spent`).

While a worker that will be started again is down, its peers wait for it (senders park until
``peer_restarted``) instead of raising ``PeerDied``: :attr:`RestartPolicy.restarts` says which.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

WINDOW = 60.0  # seconds: restarts older than this no longer count, and the backoff starts over
DEFAULT_LIMIT = 5  # restarts within WINDOW of the default policy (apps with a front door)
BACKOFF_FIRST = 0.5  # seconds before the second restart within WINDOW; doubles for each next one
BACKOFF_CAP = 8.0


@dataclass(frozen=True)
class RestartPolicy:
    """What happens to a worker of one node that ends while the app runs (see the module's contract).

    ``limit``: restarts allowed within any ``window`` seconds (0: never restarted); ``signals_only``:
    only a worker killed by a signal is restarted (the default policy), else any end (``restart =
    N``); ``explicit``: the node said ``restart = N``."""

    limit: int
    signals_only: bool = False
    explicit: bool = False
    window: float = WINDOW
    note: str = ""  # why a node without ``restart`` is never restarted

    @classmethod
    def of(cls, restart: int | None, front_door: bool, creator: bool = False) -> "RestartPolicy":
        """The policy of a node whose config says ``restart`` (None: nothing), in an app that has a
        front door or not; ``creator``: its type creates subgraph instances (see the contract)."""
        if restart is not None:
            return cls(restart, signals_only=False, explicit=True)
        if creator:
            return cls(0, note="a node that creates subgraph instances is not restarted by default")
        if front_door:
            return cls(DEFAULT_LIMIT, signals_only=True)
        return cls(0, note="an app without a front door")

    @property
    def restarts(self) -> bool:
        """May a worker of this node be started again? Its peers then wait for it while it is down."""
        return self.limit > 0

    def covers(self, why: str) -> bool:
        """Does the policy restart a worker that ended so (``why``: "was killed by SIGKILL",
        "exited with code 1", as :func:`~megflow_mp.supervisor.exit_reason` says)?"""
        return self.restarts and (not self.signals_only or killed_by_signal(why))

    def describe(self) -> str:
        """The policy in the words of an error or log line."""
        if not self.restarts:
            return "restart = 0" if self.explicit else f"no restart ({self.note})"
        within = f"at most {self.limit} restart{'s' if self.limit != 1 else ''} within {self.window:g} s"
        if self.explicit:
            return f"restart = {self.limit}: {within}"
        return f"the default policy of an app with a front door: a worker killed by a signal, {within}"


def killed_by_signal(why: str) -> bool:
    """``why`` (an :func:`~megflow_mp.supervisor.exit_reason`) says the process was killed by a signal."""
    return why.startswith("was killed by")


class RestartBudget:
    """The restarts one worker process has spent under its node's ``policy``. ``clock``: seconds,
    monotonic (tests give their own)."""

    def __init__(self, policy: RestartPolicy, clock=time.monotonic):
        self.policy, self.clock = policy, clock
        self.times: deque[float] = deque()  # when each restart within the window was granted
        self.total = 0  # restarts granted in the whole run

    def recent(self) -> int:
        """Restarts granted within the last ``policy.window`` seconds."""
        now = self.clock()
        while self.times and now - self.times[0] >= self.policy.window:
            self.times.popleft()
        return len(self.times)

    def take(self, why: str) -> float | None:
        """A worker ended (``why``): None when it is not restarted (the policy does not cover that
        end, or its budget is spent), else the backoff in seconds before it is started, counted now."""
        if not self.policy.covers(why):
            return None
        n = self.recent()
        if n >= self.policy.limit:
            return None
        self.times.append(self.clock())
        self.total += 1
        return backoff(n)

    def spent(self, why: str) -> bool:
        """``why`` was covered by the policy, but the budget is used up (:meth:`take` said None)."""
        return self.policy.covers(why) and self.recent() >= self.policy.limit

    def why_not(self, why: str) -> str:
        """Why a worker that ended (``why``) is not started again, for the app's error line ("" when
        the node never restarts: the line says enough)."""
        if not self.policy.covers(why):
            if self.policy.restarts:  # the default policy, and the worker exited with a code
                return f"; not started again: it was not killed by a signal ({self.policy.describe()})"
            return ""
        if self.spent(why):
            n = len(self.times)
            return (f"; not started again: its restart budget is spent, {n} restart{'s' if n != 1 else ''} within "
                    f"the last {self.policy.window:g} s ({self.policy.describe()})")
        return ""


def backoff(n: int) -> float:
    """Seconds before a restart that follows ``n`` others within the window: 0, 0.5, 1, 2, 4, 8, 8..."""
    return 0.0 if n == 0 else min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (n - 1))
