"""Bcast: sends every envelope to each element of its list port ``out``."""

from ..nodeargs import NoArgs
from ..registry import register


@register(name="Bcast", inputs=["inp"], outputs=["out:[]"], args=NoArgs)
class Bcast:
    def __init__(self, name, args):
        self.name = name

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        for port in self.out[:-1]:
            port.send(envelope.repack(envelope.msg))
        if self.out:
            self.out[-1].send(envelope)
