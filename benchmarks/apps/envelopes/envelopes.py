"""Plugins of the envelopes benchmark.

``EnvSource`` sends ``n`` envelopes ``{"i": i}``; ``EnvSink`` checks their order and prints one JSON
line with its own rate (first to last envelope, after ``warmup`` envelopes).
"""

import json
import time

from megflow import Envelope, register


@register(outputs=["out"])
class EnvSource:
    def __init__(self, name, args):
        self.n = args["n"]

    def exec(self):
        send, pack = self.out.send, Envelope.pack
        for i in range(self.n):
            send(pack({"i": i}))


@register(inputs=["inp"])
class EnvSink:
    def __init__(self, name, args):
        self.warmup = args.get("warmup", 0)
        self.got = 0
        self.bad = 0
        self.t0 = self.t1 = None

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            if self.inp.is_closed():
                self.finish()
            return
        if envelope.msg["i"] != self.got:
            self.bad += 1
        self.got += 1
        if self.got == self.warmup + 1:
            self.t0 = time.perf_counter()
        self.t1 = time.perf_counter()

    def finish(self):
        counted = self.got - self.warmup - 1
        seconds = self.t1 - self.t0 if counted > 0 else 0.0
        print(json.dumps({"bench": "envelopes", "count": self.got, "bad": self.bad,
                          "rate": counted / seconds if counted > 0 else 0.0, "seconds": seconds}), flush=True)
