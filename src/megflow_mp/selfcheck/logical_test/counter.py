"""A resource that counts how often it was used in this process (lifetimes are checked by Checker)."""

from megflow import res_register


@res_register()
class Counter:
    def __init__(self, name, args):
        self.name = name
        self.start = args.get("start", 0)
        self.i = self.start

    def next(self):
        self.i += 1
        return self.i
