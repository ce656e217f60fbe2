"""Crop: cuts every detected object out of its frame, for the classifier.

Input ``msg``: ``{'data': frame, 'objects': [...]}`` (from Detect). Output: the same message with
``msg['crops'][i]`` = the pixels of ``msg['objects'][i]``: its box widened ``expand`` times around
its centre and clipped to the frame. A crop is a view of the frame, not a copy (it travels to the
next process as a reference to the frame's shared memory). Objects whose clipped box is narrower or
shorter than ``min_size`` pixels are removed, and at most ``max_objects`` (the best scores) are kept.

Args: ``expand`` (default 1.1), ``min_size`` (default 8), ``max_objects`` (default 32).
"""

import numpy as np
from megflow import register


def crop_box(box, ratio: float, width: int, height: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` integer pixels: ``box`` scaled by ``ratio`` about its centre, inside the frame."""
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * ratio / 2, (y1 - y0) * ratio / 2
    return (max(0, int(cx - hw)), max(0, int(cy - hh)), min(width, int(np.ceil(cx + hw))),
            min(height, int(np.ceil(cy + hh))))


@register(inputs=["inp"], outputs=["out"])
class Crop:
    def __init__(self, name, args):
        self.expand = float(args.get("expand", 1.1))
        self.min_size = int(args.get("min_size", 8))
        self.max_objects = int(args.get("max_objects", 32))
        if self.expand <= 0 or self.min_size < 1 or self.max_objects < 0:
            raise ValueError(f"node {name!r}: expected expand > 0, min_size >= 1, max_objects >= 0; got "
                             f"{self.expand}, {self.min_size}, {self.max_objects}")

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        frame = msg["data"]
        height, width = frame.shape[:2]
        objects, crops = [], []
        for obj in msg["objects"][: self.max_objects]:
            x0, y0, x1, y1 = crop_box(obj["box"], self.expand, width, height)
            if x1 - x0 >= self.min_size and y1 - y0 >= self.min_size:
                objects.append(obj)
                crops.append(frame[y0:y1, x0:x1])
        msg["objects"], msg["crops"] = objects, crops
        self.out.send(envelope)
