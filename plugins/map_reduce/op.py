"""Rnd (source) -> Multiply(c=1), Multiply(c=2) -> Summation (reduce) -> Printer (sink)."""

import json
import sys
import random

from megflow.func_op import *  # noqa: F401,F403


def emit(tag, obj):
    """Print ``tag <json>`` as one write: worker processes share stdout, and ``print(a, b)`` writes
    its pieces separately when Python runs unbuffered (PYTHONUNBUFFERED), so lines could interleave."""
    sys.stdout.write(f"{tag} {json.dumps(obj, sort_keys=True)}\n")
    sys.stdout.flush()


@map_def()
def multiply(x, context=None):
    return {"x": x["x"], "y": x["x"] * context.c}


@reduce_def()
def summation(inp):
    # one message from each element of the list port, in port order
    if len({m["x"] for m in inp}) != 1:
        raise AssertionError(f"reduce got messages of different inputs: {inp}")
    return {"x": inp[0]["x"], "sum": sum(m["y"] for m in inp)}


@source_def()
def rnd(context=None):
    rng = random.Random(context.seed)
    for _ in range(context.n):
        yield {"x": rng.randint(0, 1000)}


@sink_def()
def printer(inp):
    emit("result", inp)
