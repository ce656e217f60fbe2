"""Sampled timing of a node's ``exec`` calls, at no cost between samples.

A :class:`Histogram` is a fixed list of bucket counts plus a sum, written by one thread at a time
and read by the sampler thread (a read may see a count without its sum: one scrape is off by one
observation at most).

:class:`ExecProbe` times a node instance's calls by putting a wrapper on the plugin object
(``obj.exec``, an instance attribute that shadows the class's method) for a budget of calls,
refilled once a second by the sampler; when the budget is spent the wrapper removes itself, so
between samples ``exec`` is the plugin's own method, untouched. A timed call's duration leaves out
the time its task was parked waiting for input or for output credit (the runtime reports those
waits with :func:`.counters.note_wait`): what remains is the node's own work. A node whose exec
runs on a thread of its own (``exclusive``) is timed only on calls that found every input waiting.
Sources (no inputs: one ``exec`` call for the whole run) are not timed, nor plugin objects whose
``exec`` is an attribute of their own or that take no attributes (``__slots__``).
"""

from __future__ import annotations

import bisect
import time
import weakref

import greenlet

from .counters import TIMED


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add(self, counts, total: float) -> None:
        for i, n in enumerate(counts):
            self.counts[i] += n
        self.sum += total


class ExecProbe:
    """Times up to ``budget`` calls of one node instance's ``exec`` after each :meth:`refill`."""

    BUDGET = 32

    def __init__(self, node, hist: Histogram):
        self.node, self.hist = node, hist
        self.left = 0
        self.installed = False

    def refill(self) -> None:
        """Allow another ``BUDGET`` timed calls (sampler thread); install the wrapper if needed."""
        self.left = self.BUDGET
        if self.installed:
            return
        obj, inboxes = self.node.obj, self.node.inboxes
        if obj is None or not inboxes or self.node.ended or "exec" in getattr(obj, "__dict__", {"exec": 0}):
            return  # ended, a source, or an object whose exec is its own attribute (or that takes none)
        # the wrapper lives on the object: it must not keep the object alive (a cycle would delay the
        # plugin's __del__ past the node's end), so it holds a weak reference and the class's method
        ref, method = weakref.ref(obj), type(obj).exec
        hist, probe, threaded = self.hist, self, self.node.threaded

        def timed():
            target = ref()
            original = method.__get__(target, type(target))
            if probe.left <= 0:
                probe.remove(target)
                return original()
            if threaded and not all(i.queue for i in inboxes):
                return original()
            task = greenlet.getcurrent()
            TIMED[task] = 0.0
            t0 = time.perf_counter()
            try:
                return original()
            finally:
                took = time.perf_counter() - t0 - TIMED.pop(task, 0.0)
                hist.observe(max(0.0, took))
                probe.left -= 1

        obj.exec = timed
        self.installed = True

    def remove(self, obj) -> None:
        """Give the plugin its own ``exec`` back (the node's thread)."""
        self.installed = False
        try:
            del obj.exec
        except AttributeError:
            pass
