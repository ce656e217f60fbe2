"""Calling the hub from other threads.

The hub and everything it owns (ports, credits, the codec's per-thread pickler aside) run on the
worker's main thread. Code on another thread (an ``exclusive`` node's ``exec``, an HTTP server)
reaches them only through :func:`run_on_hub`, which runs a function as a hub task (so it may block
on input or credit like any node) and hands back its result or exception.
"""

from __future__ import annotations

import threading

from ..errors import Cancelled
from .hub import Hub


def off_hub(hub: Hub) -> bool:
    """True when called from a thread other than the hub's."""
    return threading.get_ident() != hub.thread_id


def run_on_hub(hub: Hub, fn, *args, cancelled=None):
    """Run ``fn(*args)`` as a task on ``hub`` and block this thread until it finished.

    Returns its result or raises its exception. ``cancelled`` (a callable) is checked first: when it
    returns True the call raises :class:`Cancelled` (the engine is draining this node)."""
    if cancelled is not None and cancelled():
        raise Cancelled()
    done = threading.Event()
    box: dict = {}

    def task():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            box["error"] = exc
        finally:
            done.set()

    hub.call_soon_threadsafe(hub.spawn, task)
    done.wait()
    if "error" in box:
        raise box["error"]
    return box.get("value")
