"""Plugins of the frames benchmark.

``FrameSource`` fills ``pool`` frames ONCE at start, then for frame ``i`` writes the counter
``i % 256`` into byte 0 of a preallocated frame and sends it (the engine copies it once into its
shared-memory ring). ``FrameSink`` checks that one byte per frame and prints one JSON line with
its own rate (first to last frame, after ``warmup`` frames).
"""

import json
import time

import numpy as np

from megflow import Envelope, register


@register(outputs=["out"])
class FrameSource:
    def __init__(self, name, args):
        self.n = args["n"]
        h, w, c = args.get("shape", [1080, 1920, 3])
        rng = np.random.default_rng(0)
        self.frames = [rng.integers(0, 256, (h, w, c), dtype=np.uint8) for _ in range(args.get("pool", 4))]

    def exec(self):
        frames, pool = self.frames, len(self.frames)
        for i in range(self.n):
            frame = frames[i % pool]
            frame.flat[0] = i & 255
            self.out.send(Envelope.pack(frame, info={"partial_id": i}))


@register(inputs=["inp"])
class FrameSink:
    def __init__(self, name, args):
        self.n = args["n"]
        self.warmup = args.get("warmup", 0)
        self.got = 0
        self.bad = 0
        self.t0 = self.t1 = None
        self.nbytes = 0

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            if self.inp.is_closed():
                self.finish()
            return
        frame = envelope.msg
        if frame[0, 0, 0] != (self.got & 255):
            self.bad += 1
        self.got += 1
        if self.got == self.warmup + 1:
            self.t0 = time.perf_counter()
            self.nbytes = frame.nbytes
        self.t1 = time.perf_counter()

    def finish(self):
        counted = self.got - self.warmup - 1  # intervals between the first timed and the last frame
        rate = counted / (self.t1 - self.t0) if counted > 0 else 0.0
        print(json.dumps({"bench": "frames", "count": self.got, "bad": self.bad, "rate": rate,
                          "seconds": self.t1 - self.t0, "frame_bytes": self.nbytes}), flush=True)
