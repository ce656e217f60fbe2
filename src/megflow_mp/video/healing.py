"""How often a failed stream is started again: a bounded budget with a capped backoff.

A stream whose subgraph instance failed (a node raised on one of its frames) and whose
``on_error`` is ``"restart"`` is started again after :meth:`RestartBudget.next_delay` seconds,
unless that says None: ``limit`` restarts already happened within the last ``window`` seconds.
The delay starts at ``initial`` and doubles with each restart up to ``cap``; a stream that ran
``window`` seconds without failing starts again from ``initial``.
"""

from __future__ import annotations

import time
from collections import deque


class RestartBudget:
    def __init__(self, limit: int = 5, window: float = 60.0, initial: float = 0.5, cap: float = 10.0,
                 clock=time.monotonic):
        self.limit, self.window, self.initial, self.cap = int(limit), float(window), float(initial), float(cap)
        self.clock = clock
        self.times: deque = deque()  # when each restart within the window was granted

    def next_delay(self) -> float | None:
        """Seconds to wait before the next restart (and count it), or None when the budget is used up."""
        now = self.clock()
        quiet = not self.times or now - self.times[-1] > self.window
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()
        if len(self.times) >= self.limit:
            return None
        delay = self.initial if quiet else min(self.cap, self.initial * 2 ** len(self.times))
        self.times.append(now)
        return delay

    def describe(self) -> str:
        return f"{self.limit} restarts in {self.window:g} s"
