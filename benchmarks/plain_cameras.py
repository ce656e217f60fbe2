"""The plain program the cameras benchmark compares the engine with: what a user writes instead.

One process; per camera a decode thread (PyAV, the engine reader's options: RTSP over TCP, the same
probe sizes and timeouts, ``thread_type`` AUTO with ``--codec-threads``) that converts each frame to
BGR (``to_ndarray(format="bgr24")``) and appends it to the camera's bounded queue (``--queue-size``,
the engine's default 8), dropping and counting the oldest frame when the queue is full (the engine's
live policy); and per camera a detect thread that takes the frames in order, skips those whose
index is not a multiple of ``--interval`` (as the engine's Detect node does) and calls
``megflow_mp.models.Detector.detect`` on the others. One Detector (one onnxruntime session with
``--threads`` threads) serves every camera, as the engine's shared node does; the detect threads
call it concurrently (onnxruntime runs the calls in parallel, the GIL released).

Latency of a detected frame: from the end of its decoding (and BGR conversion) to the detector's
answer, kept per camera over the last 10 s (p50/p95 as VideoServer's ``/list`` computes them).

Control over stdin, one command a line, each answered with one JSON line on stdout:
``add URL`` -> ``{"id": k}`` (the camera starts); ``remove`` -> ``{"cameras": n}`` (the last camera
added stops, at its next frame); ``stats`` -> ``{"cameras": [{"id", "frames",
"dropped", "latency_p50_ms", "latency_p95_ms", "state"}, ...]}``; ``quit`` (or EOF) -> ``{}`` and exit.
Prints ``READY`` once the model is loaded and warmed up.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import threading
import time
from collections import deque

import av
import numpy as np

from megflow_mp.models import Detector

WINDOW = 10.0  # seconds of results behind p50/p95, as VideoServer's
_libc = ctypes.CDLL(None)


def os_thread_name(name: str) -> None:
    """Name the calling thread for the OS (``/proc/.../comm``, top, py-spy): per-thread CPU by role."""
    _libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


class Camera:
    def __init__(self, cid: int, url: str, detector: Detector, args):
        self.id, self.url, self.detector, self.args = cid, url, detector, args
        self.queue: deque = deque()
        self.cond = threading.Condition()
        self.frames = self.dropped = 0
        self.recent: deque = deque()  # (time of the answer, age in seconds)
        self.state = "starting"
        self.stop = False
        threading.Thread(target=self.decode, daemon=True, name=f"decode-{cid}").start()
        threading.Thread(target=self.detect, daemon=True, name=f"detect-{cid}").start()

    def decode(self) -> None:
        os_thread_name(f"plain-decode-{self.id}")
        try:
            options = {"rtsp_transport": "tcp", "analyzeduration": "200000", "probesize": "32768",
                       "timeout": "5000000"}
            container = av.open(self.url, options=options, timeout=(5, 5))
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.args.codec_threads
            self.state = "running"
            for frame in container.decode(stream):
                data = frame.to_ndarray(format="bgr24")
                item = (self.frames, time.monotonic(), data)
                with self.cond:
                    if len(self.queue) >= self.args.queue_size:
                        self.queue.popleft()
                        self.dropped += 1
                    self.queue.append(item)
                    self.frames += 1
                    self.cond.notify()
                if self.stop:
                    break
            self.state = "finished"
        except Exception as e:  # noqa: BLE001 - reported in stats
            self.state = f"error: {e}"

    def detect(self) -> None:
        os_thread_name(f"plain-detect-{self.id}")
        interval = self.args.interval
        while not self.stop:
            with self.cond:
                while not self.queue and not self.stop:
                    self.cond.wait(0.5)
                if self.stop:
                    return
                index, decoded_at, data = self.queue.popleft()
            if index % interval:
                continue
            self.detector.detect(data)
            now = time.monotonic()
            self.recent.append((now, now - decoded_at))

    def stats(self) -> dict:
        now = time.monotonic()
        while self.recent and now - self.recent[0][0] > WINDOW:
            self.recent.popleft()
        ages = sorted(age for _, age in list(self.recent))
        q = (lambda p: round(1000 * ages[min(len(ages) - 1, int(p * len(ages)))], 1)) if ages else (lambda p: None)
        return {"id": self.id, "frames": self.frames, "dropped": self.dropped, "state": self.state,
                "latency_p50_ms": q(0.5), "latency_p95_ms": q(0.95)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/yolox_nano.onnx")
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--conf", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--queue-size", type=int, default=8)
    ap.add_argument("--codec-threads", type=int, default=0)
    args = ap.parse_args()
    detector = Detector(args.model, conf=args.conf, nms=0.45, tsize=416, threads=args.threads)
    detector.detect(np.zeros((64, 64, 3), np.uint8))
    cameras: list[Camera] = []
    print("READY", flush=True)
    for line in sys.stdin:
        cmd, _, rest = line.strip().partition(" ")
        if cmd == "add":
            cameras.append(Camera(len(cameras), rest, detector, args))
            out = {"id": len(cameras) - 1}
        elif cmd == "remove" and cameras:
            cameras.pop().stop = True
            out = {"cameras": len(cameras)}
        elif cmd == "stats":
            out = {"cameras": [c.stats() for c in cameras]}
        elif cmd == "quit":
            break
        else:
            out = {"error": f"unknown command {cmd!r}"}
        print(json.dumps(out), flush=True)
    for c in cameras:
        c.stop = True
    print("{}", flush=True)
    os._exit(0)  # the decode threads may sit in a blocking read: no interpreter teardown under them


if __name__ == "__main__":
    sys.exit(main())
