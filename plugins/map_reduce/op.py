"""Rnd (source) -> Multiply(c=1), Multiply(c=2) -> Summation (reduce) -> Printer (sink)."""

import json
import random

from megflow.func_op import *  # noqa: F401,F403


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
    print("result", json.dumps(inp, sort_keys=True), flush=True)
