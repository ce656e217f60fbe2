"""##PROJECT_NAME##: Source and Sink, the two ends of a graph to build on.

``Source`` (no inputs) sends ``{"index": i}`` for ``i`` in ``0 .. count - 1`` (arg ``count``), then
ends; its end closes ``out``, so everything downstream ends too and the run exits. ``Sink`` prints
``sink <json>`` per message and ``sink done: N messages`` at the end of its input, each as one
write (worker processes share stdout). Add nodes between them in config.toml.
"""

import json
import sys

from megflow_mp import Envelope, register


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@register(outputs=["out"])
class Source:
    def __init__(self, name, args):
        self.count = int(args.get("count", 10))

    def exec(self):  # runs once: a node without inputs
        for i in range(self.count):
            self.out.send(Envelope.pack({"index": i}, info={"partial_id": i}))


@register(inputs=["inp"])
class Sink:
    def __init__(self, name, args):
        self.received = 0

    def exec(self):  # runs until the input ends
        envelope = self.inp.recv()
        if envelope is None:
            emit(f"sink done: {self.received} messages")
            return
        self.received += 1
        emit(f"sink {json.dumps(envelope.msg, sort_keys=True)}")
