"""##PROJECT_NAME##: Process, the node to fill in; one instance per video stream.

Input: one envelope per decoded frame, ``msg = {'data': HxWx3 BGR uint8}``, ``from_addr`` = the
stream id, ``partial_id`` = the frame's index in the stream. Output: strings (or JSON-able
objects), which VideoServer keeps for ``GET /get_msgs/{id}``.

As shipped it counts the stream's frames and reports each one:
``{"stream": 0, "frame": 12, "count": 13, "width": 1280, "height": 720, "mean_bgr": [..]}``.
Replace the body of ``exec`` with your processing.
"""

import json

from megflow_mp import register


@register(inputs=["inp"], outputs=["out"])
class Process:
    def __init__(self, name, args):
        self.name = name
        self.count = 0

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        frame = envelope.msg["data"]
        self.count += 1
        report = {"stream": envelope.from_addr, "frame": envelope.partial_id, "count": self.count,
                  "width": int(frame.shape[1]), "height": int(frame.shape[0]),
                  "mean_bgr": [round(float(v), 2) for v in frame.reshape(-1, 3).mean(axis=0)]}
        self.out.send(envelope.repack(json.dumps(report)))
