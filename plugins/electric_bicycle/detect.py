"""Detect: the YOLOX objects of every ``interval``-th frame of each stream (a shared node).

Input ``msg``: ``{'data': HxWx3 BGR uint8, ...}`` with ``partial_id`` = frame index. Frames whose
index is not a multiple of ``interval`` are dropped here; every other frame is answered with a new
message ``{'detections': [Detection, ...]}`` (:class:`megflow_mp.models.Detection`, best score first)
in the same envelope info (stream, frame index, route). The frame itself is not sent on.

Args: ``model`` (required: ``.onnx`` runs on onnxruntime, ``.mge`` on megenginelite), ``conf`` (least
score, default 0.3), ``nms`` (IoU, default 0.45), ``tsize`` (network input size, default 416),
``interval`` (default 1), ``device`` (``cpu``/``gpu``), ``device_id``, ``threads``. A missing or
unloadable model fails the node at construction, naming the file.
"""

import numpy as np
from megflow import register

from megflow_mp.models import Detector


def positive_int(args: dict, key: str, default: int, node: str) -> int:
    """``args[key]`` (or ``default``) as an int >= 1; ValueError naming the node otherwise."""
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"node {node!r}: {key} must be an integer >= 1, got {value!r}")
    return value


@register(inputs=["inp"], outputs=["out"])
class Detect:
    def __init__(self, name, args):
        if not args.get("model"):
            raise ValueError(f"node {name!r}: arg 'model' (a YOLOX .onnx or .mge file) is required")
        self.interval = positive_int(args, "interval", 1, name)
        self.detector = Detector(args["model"], conf=float(args.get("conf", 0.3)), nms=float(args.get("nms", 0.45)),
                                 tsize=int(args.get("tsize", 416)), device=args.get("device", "cpu"),
                                 device_id=int(args.get("device_id", 0)), threads=args.get("threads"))
        self.detector.detect(np.zeros((32, 32, 3), np.uint8))  # the first inference is the slow one

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None or (envelope.partial_id or 0) % self.interval:
            return
        frame = envelope.msg.get("data") if isinstance(envelope.msg, dict) else None
        if not isinstance(frame, np.ndarray):
            raise ValueError(f"Detect: expected a frame message {{'data': HxWx3 BGR array}}, got {envelope.msg!r:.80}")
        self.out.send(envelope.repack({"detections": self.detector.detect(frame)}))
