"""Source (sets ``to_addr`` itself, so it uses ``register``) -> Demux -> two Sink nodes."""

import json

from megflow import Envelope, register
from megflow.func_op import *  # noqa: F401,F403


@register(outputs=["out"])
class Source:
    """Sends 0..n-1 with ``to_addr = i % 2``. A source's ``exec`` is called once: it loops itself."""

    def __init__(self, name, args):
        self.n = args["n"]

    def exec(self):
        for i in range(self.n):
            self.out.send(Envelope.pack(i, info={"partial_id": i, "to_addr": i % 2}))


@sink_def()
def sink(x, context=None):
    if x % 2 != context.parity:
        raise AssertionError(f"{context.label} sink got {x}")
    print("result", json.dumps({"sink": context.label, "value": x}), flush=True)
