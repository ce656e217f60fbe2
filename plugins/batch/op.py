"""Gen (source) -> Group (batch_def) -> Printer (sink)."""

import json
import sys

from megflow.func_op import *  # noqa: F401,F403


def emit(tag, obj):
    """Print ``tag <json>`` as one write: worker processes share stdout, and ``print(a, b)`` writes
    its pieces separately when Python runs unbuffered (PYTHONUNBUFFERED), so lines could interleave."""
    sys.stdout.write(f"{tag} {json.dumps(obj, sort_keys=True)}\n")
    sys.stdout.flush()


@source_def()
def gen(context=None):
    for i in range(context.n):
        yield {"id": i}


@batch_def()
def group(inp, context=None):
    # ``inp`` is the list of messages of one batch; changing them in place changes what is sent on
    for x in inp:
        x["group_id"] = context.id
        x["group_size"] = len(inp)
    context.id += 1


@sink_def()
def printer(inp):
    emit("result", inp)
