"""Classify: one image in, its top-k ImageNet labels out as a JSON string.

Input ``msg``: ``{'data': HxWx3 BGR uint8, 'extra_data': str}`` (what ImageServer and ImageInput
send). Output: the same envelope repacked with
``'{"extra_data": ..., "top": [{"label": "Egyptian cat", "score": 0.87}, ...]}'`` (best first),
which ImageServer with ``response = "json"`` answers as is.

Args: ``model`` (a ``.onnx`` file runs on onnxruntime, a ``.mge`` file on megenginelite), ``topk``
(default 5), ``device`` (``cpu``/``gpu``), ``device_id``, ``threads`` (CPU threads of one inference).
A missing or unloadable model fails the node at construction, naming the file.
"""

import json

import numpy as np
from megflow import register

from megflow_mp.models import Classifier


def load_classifier(name, args) -> Classifier:
    """The Classifier the node args describe, warmed up (the first inference is the slow one)."""
    if not args.get("model"):
        raise ValueError(f"node {name!r}: arg 'model' (path of a .onnx or .mge file) is required")
    classifier = Classifier(args["model"], topk=int(args.get("topk", 5)), device=args.get("device", "cpu"),
                            device_id=int(args.get("device_id", 0)), threads=args.get("threads"))
    classifier.classify(np.zeros((224, 224, 3), np.uint8))
    return classifier


@register(inputs=["inp"], outputs=["out"])
class Classify:
    def __init__(self, name, args):
        self.name = name
        self.classifier = load_classifier(name, args)

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        (top,) = self.classifier.classify([msg["data"]])
        result = {"extra_data": msg.get("extra_data"),
                  "top": [{"label": label, "score": round(score, 6)} for label, score in top]}
        self.out.send(envelope.repack(json.dumps(result)))
