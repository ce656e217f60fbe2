"""Plugins of the chain benchmark.

``ChainSource`` sends ``n`` envelopes: with ``kind = "small"`` the message ``{"i": i}``; with
``kind = "frames"`` a 1080p BGR frame from a pool of ``pool`` frames filled once, with the counter
``i % 256`` written into its byte 0 (the engine copies each frame once into shared memory).
``Relay`` forwards what it receives (a Python pass-through node, as a MegFlow user writes one).
``ChainSink`` checks the order (``i``, or the counter byte) and prints one JSON line with its own
rate (first to last envelope, after ``warmup`` envelopes).
"""

import json
import time

import numpy as np

from megflow import Envelope, register


@register(outputs=["out"])
class ChainSource:
    def __init__(self, name, args):
        self.n, self.kind = args["n"], args["kind"]
        self.frames = []
        if self.kind == "frames":
            rng = np.random.default_rng(0)
            self.frames = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(args["pool"])]

    def exec(self):
        send, pack = self.out.send, Envelope.pack
        if self.kind == "small":
            for i in range(self.n):
                send(pack({"i": i}))
            return
        frames, pool = self.frames, len(self.frames)
        for i in range(self.n):
            frame = frames[i % pool]
            frame.flat[0] = i & 255
            send(pack(frame, info={"partial_id": i}))


@register(inputs=["inp"], outputs=["out"])
class Relay:
    def __init__(self, name, args):
        pass

    def exec(self):
        envelope = self.inp.recv()
        if envelope is not None:
            self.out.send(envelope)


@register(inputs=["inp"])
class ChainSink:
    def __init__(self, name, args):
        self.frames = args["kind"] == "frames"
        self.warmup = args.get("warmup", 0)
        self.report = args.get("report")  # also write the result there (a sink on another machine)
        self.got = self.bad = 0
        self.t0 = self.t1 = None

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            if self.inp.is_closed():
                self.finish()
            return
        msg = envelope.msg
        if (msg[0, 0, 0] != (self.got & 255)) if self.frames else (msg["i"] != self.got):
            self.bad += 1
        self.got += 1
        if self.got == self.warmup + 1:
            self.t0 = time.perf_counter()
        self.t1 = time.perf_counter()

    def finish(self):
        counted = self.got - self.warmup - 1
        seconds = self.t1 - self.t0 if counted > 0 else 0.0
        line = json.dumps({"bench": "chain", "count": self.got, "bad": self.bad,
                           "rate": counted / seconds if counted > 0 else 0.0, "seconds": seconds})
        print(line, flush=True)
        if self.report:
            with open(self.report, "w") as f:
                f.write(line)
