"""##PROJECT_NAME##: Process, the node to fill in.

Input ``msg``: ``{'data': HxWx3 BGR uint8, 'extra_data': str}`` from ImageServer (``extra_data``
is the name in ``/analyze/{name}``). Output: the same envelope; ImageServer answers the JPEG of
``msg['data']`` (``response = "image"``) or, with ``response = "json"``, the string the node sends.

As shipped it marks the image so the round trip is visible: a frame along the border and the
request's name and the image size in the top-left corner, in ``color`` (BGR, config.toml).
Replace the body of ``exec`` with your processing; keep one output per input.
"""

import cv2
import numpy as np
from megflow_mp import register


@register(inputs=["inp"], outputs=["out"])
class Process:
    def __init__(self, name, args):
        self.name = name
        self.color = tuple(int(c) for c in args.get("color", [0, 255, 0]))

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        image = np.ascontiguousarray(envelope.msg["data"]).copy()
        h, w = image.shape[:2]
        cv2.rectangle(image, (0, 0), (w - 1, h - 1), self.color, 2)
        text = f"{envelope.msg.get('extra_data')} {w}x{h}"
        cv2.putText(image, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, self.color, 2, cv2.LINE_AA)
        envelope.msg["data"] = image
        self.out.send(envelope)
