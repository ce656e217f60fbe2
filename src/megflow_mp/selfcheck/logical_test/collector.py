"""Shared node that gathers every instance's verdict and prints ``logical_test pass`` at the end."""

from megflow import register


@register(inputs=["inp"])
class Collector:
    def __init__(self, name, args):
        self.n = args["n"]
        self.verdicts = {}

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            if self.inp.is_closed():
                self.finish()
            return
        v = envelope.msg
        if v["errors"]:
            raise AssertionError(f"instance of address {v['addr']}: {'; '.join(v['errors'][:5])}")
        if v["addr"] in self.verdicts:
            raise AssertionError(f"two verdicts for address {v['addr']}")
        self.verdicts[v["addr"]] = v["count"]

    def finish(self):
        missing = sorted(set(range(self.n)) - set(self.verdicts))
        if missing:
            raise AssertionError(f"no verdict from {len(missing)} addresses, e.g. {missing[:5]}")
        print("logical_test pass", flush=True)
