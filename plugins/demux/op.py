"""Source (sets ``to_addr`` itself, so it uses ``register``) -> Demux -> two Sink nodes."""

import json
import sys

from megflow import Envelope, register
from megflow.func_op import *  # noqa: F401,F403


def emit(tag, obj):
    """Print ``tag <json>`` as one write: worker processes share stdout, and ``print(a, b)`` writes
    its pieces separately when Python runs unbuffered (PYTHONUNBUFFERED), so lines could interleave."""
    sys.stdout.write(f"{tag} {json.dumps(obj, sort_keys=True)}\n")
    sys.stdout.flush()


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
    emit("result", {"sink": context.label, "value": x})
