"""Plain Ray baseline: 1080p frames from an actor on one Ray node to an actor on another.

``python benchmarks/ray_frames.py --address ADDR --n N --cap CAP --pool P --warmup W --site RES``:
the source actor (on the driver's node) fills a pool of frames once, writes the counter ``i % 256``
into byte 0 of each frame it sends, ``ray.put``s it and calls the sink with the reference, keeping
at most ``cap`` calls in flight; the sink actor (on the node with custom resource ``RES``) gets the
array (Ray resolves the reference: the object moves to that node's object store and is read
zero-copy), checks the counter byte and measures its own rate, as the engine's ChainSink does.
Prints one JSON line: ``{"count", "bad", "rate", "seconds"}``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@ray.remote(num_cpus=0)
class Sink:
    def __init__(self, warmup: int):
        self.warmup, self.got, self.bad = warmup, 0, 0
        self.t0 = self.t1 = None

    def take(self, frame: np.ndarray) -> None:
        if frame.flat[0] != (self.got & 255):
            self.bad += 1
        self.got += 1
        if self.got == self.warmup + 1:
            self.t0 = time.perf_counter()
        self.t1 = time.perf_counter()

    def result(self) -> dict:
        counted = self.got - self.warmup - 1
        seconds = self.t1 - self.t0 if counted > 0 else 0.0
        return {"count": self.got, "bad": self.bad, "rate": counted / seconds if counted > 0 else 0.0,
                "seconds": seconds}


@ray.remote(num_cpus=0)
class Source:
    def run(self, sink, n: int, cap: int, pool: int) -> None:
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(pool)]
        inflight = []
        for i in range(n):
            frame = frames[i % pool]
            frame.flat[0] = i & 255
            inflight.append(sink.take.remote(ray.put(frame)))
            if len(inflight) >= cap:
                _, inflight = ray.wait(inflight, num_returns=1)
        ray.get(inflight)


def main() -> int:
    ap = argparse.ArgumentParser()
    for name, ty in (("address", str), ("n", int), ("cap", int), ("pool", int), ("warmup", int), ("site", str)):
        ap.add_argument(f"--{name}", type=ty, required=True)
    args = ap.parse_args()
    ray.init(address=args.address, logging_level="WARNING", log_to_driver=False)
    here = ray.get_runtime_context().get_node_id()
    sink = Sink.options(resources={args.site: 0.001}).remote(args.warmup)
    source = Source.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()
    ray.get(source.run.remote(sink, args.n, args.cap, args.pool))
    print(json.dumps({"bench": "ray_frames", **ray.get(sink.result.remote())}), flush=True)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
