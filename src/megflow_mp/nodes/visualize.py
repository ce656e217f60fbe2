"""Visualize: the rendered frames of a stream, shown live in the browser by the stream's VideoServer.

A node of the per-stream subgraph. In: frames the app drew on, either ``{'data': HxWx3 uint8 BGR,
...}`` (``key`` names another field) or the bare array; any size, any rate. Out: the frame as a view
message (:func:`megflow_mp.live.view_message`). Wire ``out`` to the subgraph output that goes back
to the VideoServer's ``inp`` (with the stream's other results, if any): the server then serves the
stream at ``/view/{id}``, encoding only while someone watches (see :mod:`megflow_mp.live`).

Arguments: the table below (``crf`` to ``threads`` are the H.264 encoder's, ``viewer_queue`` each
viewer's). A message without a BGR frame is dropped with one warning.
"""

from __future__ import annotations

import logging
import time

from typing import Literal

import numpy as np
from pydantic import Field

from ..live import view_message
from ..nodeargs import NodeArgs
from ..registry import register

log = logging.getLogger("megflow_mp")
ENCODE_ARGS = ("crf", "max_kbps", "keyint", "preset", "threads", "viewer_queue")
PRESETS = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]


class VisualizeArgs(NodeArgs):
    key: str = Field("data", description="the field of a dict message that holds the frame")
    fps: float | None = Field(None, gt=0, description="most frames per second passed on (none: all)")
    crf: float = Field(23, ge=0, le=51, description="quality: lower is better and larger")
    max_kbps: int | None = Field(None, ge=1, description="a bitrate cap (none: no cap)")
    keyint: int = Field(120, ge=1, description="most frames between keyframes")
    preset: PRESETS = Field("ultrafast", description="x264's speed preset")
    threads: int = Field(0, ge=0, le=64, description="encoder threads (0: libx264 decides)")
    viewer_queue: int = Field(8 << 20, ge=1, description="bytes a viewer may fall behind before it skips to the "
                              "next keyframe")


@register(name="Visualize", inputs=["inp"], outputs=["out"], args=VisualizeArgs)
class Visualize:
    def __init__(self, name, args):
        self.name = name
        a = VisualizeArgs.of(args, f"Visualize {name!r}")
        self.key = a.key
        self.interval = 1.0 / a.fps if a.fps else 0.0
        self.encode = a.model_dump(include=set(ENCODE_ARGS), exclude_unset=True)
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
