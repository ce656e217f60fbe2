"""Detect: YOLOX objects of a frame, added to the message.

Input ``msg``: ``{'data': HxWx3 BGR uint8, ...}``. Output: the same envelope and message with
``msg['objects']`` = ``[{'box': [x0, y0, x1, y1], 'label': 'cat', 'score': 0.79}, ...]`` (pixels of
the frame, best score first). With ``interval = N > 1`` only frames whose ``partial_id`` is a
multiple of N are detected and sent on; the others are dropped here.

Args: ``model`` (``.onnx`` runs on onnxruntime, ``.mge`` on megenginelite), ``conf`` (minimum
score, default 0.25), ``nms`` (IoU threshold, default 0.45), ``tsize`` (the network's input size,
default 416), ``interval`` (default 1), ``device``, ``device_id``, ``threads``. A missing or
unloadable model fails the node at construction, naming the file.
"""

import numpy as np
from megflow import register

from megflow_mp.models import Detector


@register(inputs=["inp"], outputs=["out"])
class Detect:
    def __init__(self, name, args):
        if not args.get("model"):
            raise ValueError(f"node {name!r}: arg 'model' (path of a YOLOX .onnx or .mge file) is required")
        self.interval = int(args.get("interval", 1))
        if self.interval < 1:
            raise ValueError(f"node {name!r}: interval must be >= 1, got {self.interval}")
        self.detector = Detector(args["model"], conf=float(args.get("conf", 0.25)), nms=float(args.get("nms", 0.45)),
                                 tsize=int(args.get("tsize", 416)), device=args.get("device", "cpu"),
                                 device_id=int(args.get("device_id", 0)), threads=args.get("threads"))
        self.detector.detect(np.zeros((64, 64, 3), np.uint8))  # warm up: the first inference is the slow one

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        if self.interval > 1 and (envelope.partial_id or 0) % self.interval:
            return
        msg = envelope.msg
        msg["objects"] = [{"box": [round(v, 1) for v in d.box], "label": d.label, "score": round(d.score, 4)}
                          for d in self.detector.detect(msg["data"])]
        self.out.send(envelope)
