"""Transform: forwards every envelope unchanged (a pass-through)."""

from ..nodeargs import NoArgs
from ..registry import register


@register(name="Transform", inputs=["inp"], outputs=["out"], args=NoArgs)
class Transform:
    def __init__(self, name, args):
        self.name = name

    def exec(self):
        envelope = self.inp.recv()
        if envelope is not None:
            self.out.send(envelope)
