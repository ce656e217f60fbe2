"""The counters the runtime's hot path increments: plain attributes of one object per process.

:func:`note_wait` is called where a task parks waiting for input or for credit (never on the
path of a message that was already there): it adds the wait to ``COUNTS.blocked`` (credit) and to
the task's entry in :data:`TIMED` when :mod:`.exectime` is timing that task's ``exec`` call (an
empty dict otherwise: one truth test).

The transport's receive loop, the credit table and a node's failure path add to :data:`COUNTS`
(``COUNTS.received += 1``): no lock, no system call, no allocation. A worker's sampler thread
(:mod:`.sampler`) reads them once a second; reading a Python int another thread writes is safe
under the interpreter lock. A forked worker inherits its parent's values: the sampler resets them
when it starts, so each process counts only its own envelopes.
"""

from __future__ import annotations

import time

import greenlet


class Counts:
    """Per-process totals since the process (or its sampler) started."""

    __slots__ = ("received", "sent", "blocked", "errors")

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.received = 0  # envelopes that arrived for this process's node instances
        self.sent = 0  # envelopes sent, one per receiving channel (a broadcast to 2 counts 2)
        self.blocked = 0.0  # seconds a send waited for credit (the receivers' queues were full)
        self.errors = 0  # exceptions a node's exec raised


COUNTS = Counts()


TIMED: dict = {}  # task (greenlet) whose exec call is being timed -> seconds it waited so far


def note_wait(started: float, credit: bool = False) -> None:
    """The current task waited since ``started`` (``time.perf_counter()``): for credit (a full
    receiver: backpressure) when ``credit``, else for input."""
    if credit:
        COUNTS.blocked += time.perf_counter() - started
    if TIMED:
        task = greenlet.getcurrent()
        if task in TIMED:
            TIMED[task] += time.perf_counter() - started
