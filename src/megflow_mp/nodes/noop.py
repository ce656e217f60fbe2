"""NoopProducer (sends nothing, ends at once) and NoopConsumer (drops everything)."""

from ..registry import register


@register(name="NoopProducer", outputs=["out"])
class NoopProducer:
    def __init__(self, name, args):
        self.name = name

    def exec(self):
        return


@register(name="NoopConsumer", inputs=["inp"])
class NoopConsumer:
    def __init__(self, name, args):
        self.name = name

    def exec(self):
        self.inp.recv()
