"""The asynchronous helpers of MegFlow's plugin API: ``yield_now``, ``sleep``, ``join``,
``create_future``. They act on the calling process's hub; outside a node task they fall back to
plain blocking behaviour (``sleep``) or sequential execution (``join`` on a thread of a node's
process). In a program (no node in this process) ``join`` runs its functions as concurrent tasks
through :func:`megflow_mp.program.block_on`.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar

from .runtime import worker as _worker
from .runtime.hub import Future

# a hub that code outside any worker runs its tasks on (a program's block_on, testing.run_node);
# hub tasks inherit it with the rest of the spawner's context
_HUB: ContextVar = ContextVar("megflow_mp_hub", default=None)


def current_hub():
    """The hub of the calling code (its worker's, or the one :func:`using_hub` set), or None."""
    w = _worker.current_worker()
    if w is not None:
        return w.hub
    return _HUB.get()


@contextmanager
def using_hub(hub):
    """Within the block (and in the tasks spawned from it) the plugin API acts on ``hub``."""
    token = _HUB.set(hub)
    try:
        yield hub
    finally:
        _HUB.reset(token)


def yield_now() -> None:
    """Let the other tasks of this process run, then continue."""
    hub = current_hub()
    if hub is not None:
        hub.yield_now()


def sleep(ms: float) -> None:
    """Suspend the calling task for ``ms`` milliseconds (other tasks go on)."""
    hub = current_hub()
    if hub is None:
        time.sleep(ms / 1000.0)
    else:
        hub.sleep(ms / 1000.0)


def join(tasks) -> list:
    """Run each zero-argument function in ``tasks`` concurrently; return their results in order.
    The first exception raised by a task is re-raised after all of them finished."""
    tasks = list(tasks)
    hub = current_hub()
    if hub is None:  # a program: the functions become tasks of its hub
        from .program import block_on

        return block_on(lambda: join(tasks))
    results = [None] * len(tasks)
    errors: list[BaseException] = []
    if not hub.in_task():  # no task to suspend (a thread of a node's process): one after the other
        for i, fn in enumerate(tasks):
            try:
                results[i] = fn()
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others ran
                errors.append(exc)
        if errors:
            raise errors[0]
        return results
    done = Future(hub)
    left = [len(tasks)]

    def run(i, fn):
        try:
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)
            if isinstance(exc, KeyboardInterrupt):  # the program is stopping: waiting for the others could hang
                done.set(None)
        left[0] -= 1
        if left[0] == 0:
            done.set(None)

    for i, fn in enumerate(tasks):
        hub.spawn(run, i, fn)
    if tasks:
        done.wait()
    if errors:
        raise errors[0]
    return results


class Waker:
    """Wakes the future it was created with: ``wake(result)``. Picklable: it may travel in a
    message to another node (another process) and still wake its future. It binds the worker it is
    made or unpickled under, so ``wake`` works from any thread of that process (a plugin's own)."""

    def __init__(self, proc, fid, future=None, callback=None):
        self.proc, self.fid, self._future, self._callback = proc, fid, future, callback
        self._worker = _worker.current_worker()

    def __reduce__(self):
        return (Waker, (self.proc, self.fid))

    def wake(self, result=None) -> None:
        w = self._worker
        if self._future is not None and (w is None or w.index == self.proc):
            hub = self._future.hub
            value = self._callback(result) if self._callback else result
            if threading.get_ident() == hub.thread_id:
                self._future.set(value)
            else:
                hub.call_soon_threadsafe(self._future.set, value)
            return
        if w is None:
            raise RuntimeError("this waker belongs to another process and no worker runs here")
        if threading.get_ident() == w.hub.thread_id:
            w.control(self.proc, "wake", self.fid, result)
        else:
            w.hub.call_soon_threadsafe(w.control, self.proc, "wake", self.fid, result)


def create_future(callback=None):
    """``(future, waker)``: ``future.wait()`` blocks the task until ``waker.wake(result)`` and
    returns ``result`` (or ``callback(result)`` when a callback is given)."""
    w = _worker.current_worker()
    if w is not None:
        fut, fid = w.new_future()
        return fut, Waker(w.index, fid, fut, callback)
    hub = current_hub()
    if hub is None:
        raise RuntimeError("create_future() needs a running node (or megflow_mp.testing)")
    fut = Future(hub)
    return fut, Waker(None, None, fut, callback)
