"""Failed attempts per client address: after ``limit`` failures within ``window`` seconds, the
address is refused (429 with ``Retry-After``) until the oldest of them is ``window`` old.

Only failures count (a bad token, a forged cookie, a failed login), never a request without
credentials or a good one. Per server process, in memory; at most :data:`MAX_ADDRESSES` addresses
are tracked (the least recently failing dropped first), so a flood of addresses cannot grow it.
Called from one event loop thread; a lock makes it safe from others too.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque

MAX_ADDRESSES = 10_000


class RateLimiter:
    def __init__(self, limit: int = 10, window: float = 60.0, clock=time.monotonic):
        self.limit, self.window, self.clock = int(limit), float(window), clock
        self.failures: OrderedDict[str, deque] = OrderedDict()
        self.lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque | None:
        times = self.failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self.failures[address]
            return None
        return times

    def blocked(self, address: str) -> int | None:
        """Seconds until ``address`` may try again (for ``Retry-After``), or None: not blocked."""
        with self.lock:
            now = self.clock()
            times = self._recent(address, now)
            if times is None or len(times) < self.limit:
                return None
            return max(1, math.ceil(times[-self.limit] + self.window - now))

    def fail(self, address: str) -> None:
        with self.lock:
            now = self.clock()
            times = self._recent(address, now)
            if times is None:
                times = self.failures[address] = deque(maxlen=self.limit)
                while len(self.failures) > MAX_ADDRESSES:
                    self.failures.popitem(last=False)
            else:
                self.failures.move_to_end(address)
            times.append(now)
