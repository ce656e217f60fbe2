"""The cooperative scheduler of one process: greenlet tasks, timers, file events, thread calls.

Every node instance of a worker runs as a task (a greenlet) on the process's single :class:`Hub`,
as MegFlow ran its nodes on a thread-local coroutine scheduler. A task blocks only through the hub
(``park``): waiting for input, credit, a timer or a future switches to the hub, which runs other
ready tasks, flushes outgoing batches and waits on sockets and timers. Plain blocking calls in
plugin code (``time.sleep``, a model's forward) block the whole process, which hosts only replicas
of one node declaration, so only that node's other instances wait.

Threads (HTTP servers, plugin threads) talk to the hub only through :meth:`Hub.call_soon_threadsafe`.

In a throughput process (``SCHED_BATCH``: a graph's worker, see ``worker._set_policy``) the hub
yields the core once (``sched_yield``) before it sleeps and looks at its files again: where the
processes of a graph outnumber the cores, the stage it feeds or waits for is often ready to run on
this core, and what it sends back is then found without a sleep and a wake-up, each dearer than the
yield (in a virtual machine, far dearer). With nothing else ready the yield returns at once. A
front door's process (normal policy) sleeps at once: a client's request wakes it, and preempts.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import os
import select
import threading
import time
from collections import deque
from typing import Callable

import greenlet


class Timer:
    __slots__ = ("deadline", "fn", "args", "cancelled")

    def __init__(self, deadline, fn, args):
        self.deadline, self.fn, self.args, self.cancelled = deadline, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class Poller:
    """The hub's file events: ``register(fileobj, events, callback)`` (read events; ``events`` is
    accepted for ``selectors``' signature), ``unregister(fileobj)`` (KeyError when not registered),
    ``select(timeout)`` -> ``[(callback, mask)]`` (level-triggered; None: wait without end),
    ``close()``. ``select.epoll`` used directly: the hub waits on it once per wake-up, and
    ``selectors``' keys and masks cost it more than the system call."""

    def __init__(self):
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable] = {}

    @staticmethod
    def _fd(fileobj) -> int:
        return fileobj if isinstance(fileobj, int) else fileobj.fileno()

    def register(self, fileobj, events, callback: Callable) -> None:
        fd = self._fd(fileobj)
        if fd in self._callbacks:
            raise KeyError(f"{fileobj!r} is already registered")
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def unregister(self, fileobj) -> None:
        fd = self._fd(fileobj)
        del self._callbacks[fd]
        try:
            self._epoll.unregister(fd)
        except OSError:  # closed already: the kernel forgot it
            pass

    def select(self, timeout: float | None) -> list:
        callbacks = self._callbacks
        return [(callbacks[fd], mask) for fd, mask in self._epoll.poll(-1 if timeout is None else timeout)
                if fd in callbacks]

    def close(self) -> None:
        self._epoll.close()


class Hub:
    """Runs tasks until a condition holds. Not thread-safe except ``call_soon_threadsafe``."""

    def __init__(self):
        self.main = greenlet.getcurrent()
        self.ready: deque = deque()
        self._timers: list = []
        self._seq = itertools.count()
        self.selector = Poller()
        self._calls: deque = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, select.EPOLLIN, self._drain_wakeups)
        self.thread_id = threading.get_ident()
        self._closed = False
        self.idle_hooks: list[Callable[[], None]] = []  # run before the hub waits (flush batches)
        self.woke = time.monotonic()  # when the hub last came back from waiting (its busy spell began)
        self.yields = os.sched_getscheduler(0) == os.SCHED_BATCH  # yield the core before sleeping
        self.interrupted = False  # a Ctrl-C to take (interrupt()): run_until raises KeyboardInterrupt

    # -- tasks -----------------------------------------------------------------------------------
    def spawn(self, fn: Callable, *args) -> greenlet.greenlet:
        """Start ``fn(*args)`` as a task at the next scheduling point, in a copy of the calling
        code's context (contextvars). Exceptions are the caller's business: wrap ``fn`` if they
        must be reported."""
        g = greenlet.greenlet(lambda *_: fn(*args), parent=self.main)
        g.gr_context = contextvars.copy_context()  # the task sees the spawner's context (its worker)
        self.ready.append((g, None))
        return g

    def in_task(self) -> bool:
        return greenlet.getcurrent() is not self.main and threading.get_ident() == self.thread_id

    def park(self):
        """Block the current task until someone calls :meth:`wake` for it; returns the wake value."""
        if greenlet.getcurrent() is self.main:
            raise RuntimeError("blocking call outside a node task (no task to suspend)")
        return self.main.switch()

    def wake(self, task: greenlet.greenlet, value=None) -> None:
        self.ready.append((task, value))

    def throw(self, task: greenlet.greenlet, exc: BaseException) -> None:
        """Raise ``exc`` in ``task`` at its current blocking point (used to stop sources)."""
        self.ready.append((task, exc))

    def yield_now(self) -> None:
        if not self.in_task():
            return
        self.wake(greenlet.getcurrent())
        self.park()

    def sleep(self, seconds: float) -> None:
        if not self.in_task():
            time.sleep(seconds)
            return
        task = greenlet.getcurrent()
        self.call_later(seconds, self.wake, task)
        self.park()

    # -- timers and threads ------------------------------------------------------------------------
    def call_later(self, delay: float, fn: Callable, *args) -> Timer:
        t = Timer(time.monotonic() + delay, fn, args)
        heapq.heappush(self._timers, (t.deadline, next(self._seq), t))
        return t

    def call_soon_threadsafe(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on the hub (from any thread, or a signal handler)."""
        self._calls.append((fn, args))
        if self._closed:
            return
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):  # full (a wake-up is pending anyway), or closed meanwhile
            pass

    def interrupt(self) -> None:
        """Make :meth:`run_until` raise KeyboardInterrupt at its next turn, in the main greenlet between
        tasks, where every task is at a blocking point and no engine state is half updated. Safe in a
        signal handler (a flag and a byte to the wake-up pipe): a program's Ctrl-C
        (:mod:`megflow_mp.program`)."""
        self.interrupted = True
        if self._closed:
            return
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):  # full (a wake-up is pending anyway), or closed meanwhile
            pass

    def _drain_wakeups(self, _mask) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    # -- the loop ------------------------------------------------------------------------------------
    def _run_ready(self) -> None:
        ready = self.ready
        for _ in range(len(ready)):
            task, value = ready.popleft()
            if task.dead:
                continue
            if value is None:
                task.switch()
            elif isinstance(value, BaseException):
                task.throw(value)
            else:
                task.switch(value)

    def _run_due(self) -> None:
        timers, now = self._timers, time.monotonic()
        while timers and timers[0][0] <= now:
            t = heapq.heappop(timers)[2]
            if not t.cancelled:
                t.fn(*t.args)
        calls = self._calls
        while calls:
            fn, args = calls.popleft()
            fn(*args)

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Run tasks and events until ``done()`` is true (checked whenever no task is ready).
        Returns False if ``timeout`` seconds passed first; raises KeyboardInterrupt after
        :meth:`interrupt`. Must be called from the main greenlet."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.interrupted:
                self.interrupted = False
                raise KeyboardInterrupt
            self._run_ready()
            self._run_due()
            if self.ready:
                self.poll_nowait()
                continue
            if done():
                return True
            for hook in self.idle_hooks:
                hook()
            if self.ready:
                continue
            wait = None
            if self._timers:
                while self._timers and self._timers[0][2].cancelled:
                    heapq.heappop(self._timers)
                if self._timers:
                    wait = max(0.0, self._timers[0][0] - time.monotonic())
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                wait = left if wait is None else min(wait, left)
            if self._calls:
                wait = 0
            if wait != 0 and self.yields:  # about to sleep: the processes ready on this core run first
                os.sched_yield()
                events = self.selector.select(0) or self.selector.select(wait)
            else:
                events = self.selector.select(wait)
            self.woke = time.monotonic()
            for callback, mask in events:
                callback(mask)

    def poll_nowait(self) -> None:
        """Handle pending socket events without blocking (from inside a busy task)."""
        for callback, mask in self.selector.select(0):
            callback(mask)
        self._run_due()

    def close(self) -> None:
        self._closed = True
        self.selector.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


class Future:
    """``create_future()``'s future: ``wait()`` parks the calling task until the waker fires."""

    __slots__ = ("hub", "done", "value", "waiters")

    def __init__(self, hub: Hub):
        self.hub, self.done, self.value, self.waiters = hub, False, None, []

    def set(self, value) -> None:
        """Resolve the future (on the hub's thread) and wake its waiters, tasks and threads."""
        if self.done:
            return
        self.done, self.value = True, value
        for w in self.waiters:
            if isinstance(w, threading.Event):
                w.set()
            else:
                self.hub.wake(w)
        self.waiters.clear()

    def wait(self):
        """Block the calling task (or, from another thread, that thread) until resolved."""
        if threading.get_ident() != self.hub.thread_id:
            event = threading.Event()
            self.hub.call_soon_threadsafe(self._wait_from_thread, event)
            event.wait()
            return self.value
        while not self.done:
            self.waiters.append(greenlet.getcurrent())
            self.hub.park()
        return self.value

    def _wait_from_thread(self, event: threading.Event) -> None:
        if self.done:
            event.set()
        else:
            self.waiters.append(event)
