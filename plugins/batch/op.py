"""Gen (source) -> Group (batch_def) -> Printer (sink)."""

import json

from megflow.func_op import *  # noqa: F401,F403


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
    print("result", json.dumps(inp, sort_keys=True), flush=True)
