"""The decode-only baseline of bench_video_server.py: PyAV decodes files, one thread per file.

``python benchmarks/video_decode.py [--threads T] FILE...`` decodes every FILE on its own thread of
this one process, as the engine's StreamReader does it (``av.open``, the first video stream with
``thread_type = "AUTO"`` and ``thread_count = T`` (0: FFmpeg's choice), ``packet.decode()``, the frame
as a C-contiguous BGR array), and throws each frame away. ``--convert`` says how a frame becomes that
array: ``engine`` (default) is the engine's own conversion (megflow_mp.video.reader.BGRConverter: one
swscale context per file, libswscale writing straight into the array) into ONE array per thread,
reused for every frame, so nothing is allocated or kept: the least work that decodes and converts;
``to_ndarray`` is PyAV's one-liner ``frame.to_ndarray(format="bgr24")``, which
builds and frees a swscale context (and its slice threads) for every frame. Prints one JSON
line: ``frames`` (all files), ``seconds`` (from just before the first ``av.open`` to the last frame
decoded; interpreter start and imports excluded), ``rate`` (frames / seconds), ``per_file`` and
``first_frame_s`` (when the first frame of any file was ready) and ``cpu_s`` (CPU seconds of this
process over the same span, every thread).
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

from megflow_mp.video.reader import BGRConverter  # imported before the timed span

def engine_converter():
    """The engine's frame -> BGR conversion, into one array per frame size, reused for every frame."""
    arrays: dict = {}

    def alloc(shape, dtype):
        if shape not in arrays:
            arrays[shape] = np.empty(shape, dtype)
        return arrays[shape]

    return BGRConverter(alloc)


CONVERTERS = {
    "engine": engine_converter,
    "to_ndarray": lambda: lambda frame: frame.to_ndarray(format="bgr24"),
}


def decode(path: str, threads: int, convert: str, out: dict, key: int) -> None:
    count, first = 0, None
    to_bgr = CONVERTERS[convert]()
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue
            for frame in frames:
                data = np.ascontiguousarray(to_bgr(frame))
                if first is None:
                    first = time.perf_counter()
                count += 1
                del data
    out[key] = {"frames": count, "first": first, "last": time.perf_counter()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="codec threads per file (0: FFmpeg's choice)")
    p.add_argument("--convert", choices=sorted(CONVERTERS), default="engine", help="frame -> BGR array (see above)")
    p.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    out: dict = {}
    workers = [threading.Thread(target=decode, args=(f, args.threads, args.convert, out, i))
               for i, f in enumerate(args.files)]
    c0 = os.times()
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if len(out) != len(args.files):
        print(f"video_decode.py: {len(args.files) - len(out)} files failed", file=sys.stderr)
        return 1
    c1 = os.times()
    end = max(r["last"] for r in out.values())
    frames = sum(r["frames"] for r in out.values())
    seconds = end - t0
    print(json.dumps({"frames": frames, "seconds": seconds, "rate": frames / seconds,
                      "per_file": [out[i]["frames"] for i in range(len(args.files))],
                      "first_frame_s": min(r["first"] for r in out.values()) - t0,
                      "cpu_s": c1.user - c0.user + c1.system - c0.system}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
