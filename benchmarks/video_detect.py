"""A plain baseline of bench_video_apps.py: decode N files and run electric_bicycle's model work, no engine.

``python benchmarks/video_detect.py --model M [--interval K] [--threads T] FILE...`` decodes every
FILE on its own thread of this one process, as benchmarks/video_decode.py does (PyAV, codec threads
chosen by FFmpeg, the engine's BGR conversion into one reused array per file), and, as the app's
nodes do, runs one shared :class:`megflow_mp.models.Detector` (``T`` onnxruntime threads, conf 0.3,
416) on every ``K``-th frame of each file and feeds the detections to an
:class:`megflow_mp.models.IouTracker` per file. Prints one JSON line: ``frames``, ``seconds``
(first ``av.open`` -> last frame done; interpreter start and model load excluded), ``rate``,
``per_file``, ``detected`` (frames detected) and ``cpu_s`` (this process over the same span).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import av
import numpy as np
from video_decode import engine_converter  # this folder: the engine's conversion, as the baseline's


def run_file(path: str, detector, interval: int, out: dict, key: int) -> None:
    from megflow_mp.models import IouTracker

    tracker = IouTracker(iou=0.3, max_missed=2)
    to_bgr = engine_converter()
    frames = detected = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            image = to_bgr(frame)
            if frames % interval == 0:
                tracker.update(detector.detect(image), frames)
                detected += 1
            frames += 1
    out[key] = {"frames": frames, "detected": detected, "last": time.perf_counter()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--interval", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    from megflow_mp.models import Detector, IouTracker  # noqa: F401 - imported before the timed span

    detector = Detector(args.model, conf=0.3, nms=0.45, tsize=416, threads=args.threads)
    detector.detect(np.zeros((32, 32, 3), np.uint8))  # warm up, as the app's node does
    out: dict = {}
    workers = [threading.Thread(target=run_file, args=(f, detector, args.interval, out, i))
               for i, f in enumerate(args.files)]
    c0, t0 = os.times(), time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    c1 = os.times()
    if len(out) != len(args.files):
        print(f"video_detect.py: {len(args.files) - len(out)} files failed", file=sys.stderr)
        return 1
    frames = sum(r["frames"] for r in out.values())
    seconds = max(r["last"] for r in out.values()) - t0
    print(json.dumps({"frames": frames, "seconds": seconds, "rate": frames / seconds,
                      "per_file": [out[i]["frames"] for i in range(len(args.files))],
                      "detected": sum(r["detected"] for r in out.values()),
                      "cpu_s": c1.user - c0.user + c1.system - c0.system}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
