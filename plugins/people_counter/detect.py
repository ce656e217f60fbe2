"""DetectPeople: the people (COCO class ``person``) in a frame, for every stream at once.

Declared once at the config's top level (``[[nodes]]``): one model in memory, and each stream's
frames come back to that stream's own counter. Input ``msg``: ``{'data': HxWx3 BGR uint8}``.
Output: the same message with ``msg['people']`` = ``[{'box': [x0, y0, x1, y1], 'score': 0.88}, ...]``
(pixels of the frame, best score first). Args: ``model`` (a YOLOX ``.onnx`` or ``.mge`` file),
``conf`` (least score, default 0.4), ``threads``.
"""

import numpy as np
from megflow import register

from megflow_mp.models import Detector

PERSON = "person"  # class 0 of COCO-80, the detector's labels


@register(inputs=["inp"], outputs=["out"])
class DetectPeople:
    def __init__(self, name, args):
        self.detector = Detector(args["model"], conf=float(args.get("conf", 0.4)), threads=args.get("threads"))
        self.detector.detect(np.zeros((64, 64, 3), np.uint8))  # the first inference is the slow one

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        found = self.detector.detect(envelope.msg["data"])
        envelope.msg["people"] = [{"box": [round(v, 1) for v in d.box], "score": round(d.score, 3)}
                                  for d in found if d.label == PERSON]
        self.out.send(envelope)
