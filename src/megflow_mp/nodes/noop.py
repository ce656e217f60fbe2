"""NoopProducer (sends nothing, ends at once) and NoopConsumer (drops everything)."""

from ..nodeargs import NoArgs
from ..registry import register


@register(name="NoopProducer", outputs=["out"], args=NoArgs)
class NoopProducer:
    def __init__(self, name, args):
        self.name = name

    def exec(self):
        return


@register(name="NoopConsumer", inputs=["inp"], args=NoArgs)
class NoopConsumer:
    def __init__(self, name, args):
        self.name = name

    def exec(self):
        self.inp.recv()
