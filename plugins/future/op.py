"""Printer (source_def: creates futures, sends wakers, joins) -> Rnd (sink_def: wakes them)."""

import json
import sys

from megflow import create_future, join, sleep, yield_now
from megflow.func_op import *  # noqa: F401,F403


def emit(tag, obj):
    """Print ``tag <json>`` as one write: worker processes share stdout, and ``print(a, b)`` writes
    its pieces separately when Python runs unbuffered (PYTHONUNBUFFERED), so lines could interleave."""
    sys.stdout.write(f"{tag} {json.dumps(obj, sort_keys=True)}\n")
    sys.stdout.flush()


def compute(x):
    """What the sink wakes a future with (deterministic, so the test can check it)."""
    return x * x + 1


@sink_def()
def rnd(inp, context=None):
    sleep(context.delay_ms)  # suspends this task only; the worker process keeps serving
    value = compute(inp["x"])
    emit("woke", {"round": inp["round"], "x": inp["x"], "value": value})
    inp["waker"].wake(value)  # the future lives in the source's process: the engine routes the wake-up


@source_def()
def printer(context=None):
    for r in range(context.n):
        xs = [2 * r, 2 * r + 1]
        fut1, waker1 = create_future()
        yield {"round": r, "x": xs[0], "waker": waker1}
        fut2, waker2 = create_future()
        yield {"round": r, "x": xs[1], "waker": waker2}
        yield_now()  # nothing to wait for yet: just let other tasks of this process run
        r1, r2 = join([lambda: fut1.wait(), lambda: fut2.wait()])
        emit("result", {"round": r, "xs": xs, "values": [r1, r2]})
