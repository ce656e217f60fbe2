"""Describe: a frame's detections and their classes as one JSON string (the stream's message).

Input ``msg``: ``{'data': frame, 'objects': [...], 'batch': k, ...}`` (from Classify). Output: the
envelope repacked with ``'{"stream": 0, "frame": 12, "batch": 2, "objects": [{"box": [...],
"label": "cat", "score": 0.79, "classes": [{"label": "Egyptian cat", "score": 0.95}, ...]}]}'``:
``stream`` is the envelope's ``from_addr`` (VideoServer/VideoInput stream id) and ``frame`` its
``partial_id``; an image from ImageServer/ImageInput carries ``extra_data`` instead of ``stream``.
The frame itself is not part of the message. Args: none.
"""

import json

from megflow import register


@register(inputs=["inp"], outputs=["out"])
class Describe:
    def __init__(self, name, args):
        pass

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        result = {"frame": envelope.partial_id, "batch": msg.get("batch"), "objects": msg["objects"]}
        if "extra_data" in msg:
            result["extra_data"] = msg["extra_data"]
        else:
            result["stream"] = envelope.from_addr
        self.out.send(envelope.repack(json.dumps(result)))
