"""How late a stream's results are: the age of a frame when its result leaves the stream's subgraph.

:class:`Latency` is fed by the stream's two hub tasks of one process: :meth:`Latency.sent` when a
frame goes into the instance (its decode time, by frame index), :meth:`Latency.result` when an
envelope comes out of it (matched by ``partial_id``, the frame index that ``repack`` keeps). A
result whose frame is not known (a node that made its own ``partial_id``) is not counted. The
frames still waiting for a result are bounded (``pending``): a graph that answers only some frames
(``interval``) forgets the oldest. Samples feed a histogram (``megflow_stream_latency_seconds``)
and a window of the last ``window`` seconds for p50/p95 in ``/list``.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from ..observe.exectime import Histogram


class Latency:
    def __init__(self, buckets, window: float = 10.0, pending: int = 4096, clock=time.monotonic):
        self.hist = Histogram(buckets)
        self.window, self.pending, self.clock = window, pending, clock
        self.decoded: OrderedDict = OrderedDict()  # frame index -> decode time, oldest first
        self.recent: deque = deque()  # (time of the result, age in seconds)

    def sent(self, index: int, decoded_at: float) -> None:
        self.decoded[index] = decoded_at
        if len(self.decoded) > self.pending:
            self.decoded.popitem(last=False)

    def result(self, index) -> None:
        decoded_at = self.decoded.pop(index, None)
        if decoded_at is None:
            return
        now = self.clock()
        age = now - decoded_at
        self.hist.observe(age)
        self.recent.append((now, age))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self.recent and now - self.recent[0][0] > self.window:
            self.recent.popleft()

    def percentiles(self) -> tuple[float | None, float | None]:
        """p50 and p95 in milliseconds over the last ``window`` seconds (None: no result then)."""
        self._trim(self.clock())
        ages = sorted(age for _, age in list(self.recent))
        if not ages:
            return None, None
        return _quantile_ms(ages, 0.5), _quantile_ms(ages, 0.95)


def _quantile_ms(ages: list, q: float) -> float:
    return round(1000 * ages[min(len(ages) - 1, int(q * len(ages)))], 1)
