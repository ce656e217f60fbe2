"""Visualize: the rendered frames of a stream, shown live in the browser by the stream's VideoServer.

A node of the per-stream subgraph. In: frames the app drew on, either ``{'data': HxWx3 uint8 BGR,
...}`` (``key`` names another field) or the bare array; any size, any rate. Out: the frame as a view
message (:func:`megflow_mp.live.view_message`). Wire ``out`` to the subgraph output that goes back
to the VideoServer's ``inp`` (with the stream's other results, if any): the server then serves the
stream at ``/view/{id}``, encoding only while someone watches (see :mod:`megflow_mp.live`).

Args: ``key`` ("data"); ``fps`` (most frames per second passed on, default: all); encoder options
``crf`` (23, lower is better and larger), ``max_kbps`` (a bitrate cap, default none), ``keyint``
(frames between keyframes, 120), ``preset`` (x264's, "ultrafast"); ``viewer_queue`` (bytes a viewer
may fall behind before it skips to the next keyframe, 8 MiB). A message without a BGR frame is
dropped with one warning.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..live import view_message
from ..registry import register

log = logging.getLogger("megflow_mp")
ENCODE_ARGS = {"crf": float, "max_kbps": int, "keyint": int, "preset": str, "threads": int, "viewer_queue": int}


@register(name="Visualize", inputs=["inp"], outputs=["out"])
class Visualize:
    def __init__(self, name, args):
        self.name = name
        self.key = str(args.get("key", "data"))
        fps = args.get("fps")
        self.interval = 1.0 / float(fps) if fps else 0.0
        self.encode = {k: conv(args[k]) for k, conv in ENCODE_ARGS.items() if k in args}
        self.next_at = 0.0
        self.warned = False

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        frame = msg.get(self.key) if isinstance(msg, dict) else msg
        if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
            if not self.warned:
                self.warned = True
                got = f"keys {sorted(msg)}" if isinstance(msg, dict) else type(msg).__name__
                log.warning("Visualize %r: expected a BGR frame (HxWx3 uint8) in %r, got %s; such messages are "
                            "dropped", self.name, self.key, got)
            return
        if self.interval:
            now = time.monotonic()
            if now < self.next_at:
                return
            on_time = now - self.next_at < self.interval / 2  # keep the cadence, or restart it from now
            self.next_at = (self.next_at if on_time else now) + self.interval
        self.out.send(envelope.repack(view_message(frame, self.encode)))
