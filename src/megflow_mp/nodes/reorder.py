"""Reorder: emits envelopes in ``partial_id`` order (0, 1, 2, ...), buffering early ones.

Put it after a node with ``cloned = N`` (N > 1): its replicas take messages as they come free, so
a stream's results leave them out of order (``[0, 2, 1, 4, 3, ...]``); Reorder gives back
``[0, 1, 2, ...]``. Use one Reorder per stream (inside the per-stream subgraph), since
``partial_id`` counts per stream.
"""

from pydantic import Field

from ..nodeargs import NodeArgs
from ..registry import register


class ReorderArgs(NodeArgs):
    start: int = Field(0, ge=0, description="the first partial_id")


@register(name="Reorder", inputs=["inp"], outputs=["out"], args=ReorderArgs)
class Reorder:
    def __init__(self, name, args):
        self.name = name
        self.next = ReorderArgs.of(args, f"Reorder {name!r}").start
        self.held = {}

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            for pid in sorted(self.held):  # stream ended with gaps: flush what is left, in order
                self.out.send(self.held.pop(pid))
            return
        self.held[envelope.partial_id] = envelope
        while self.next in self.held:
            self.out.send(self.held.pop(self.next))
            self.next += 1
