"""BatchClassify: whole images classified in dynamic batches, each answered with its own top-k JSON.

Each call takes up to ``max_batch`` envelopes with ``batch_recv``, waiting at most ``wait_time`` ms
after the first for more (requests of several clients at once), classifies all their images in
one call of :class:`megflow_mp.models.Classifier` and repacks every envelope with its own answer:
``'{"extra_data": ..., "batch": 3, "top": [{"label": "Egyptian cat", "score": 0.87}, ...]}'`` (best
first, as simple_classification's Classify answers; ``batch``: how many images were classified
together), so ImageServer with ``response = "json"`` replies it.

Args: ``model`` (required, MobileNetV2 ``.onnx`` or ``.mge``), ``topk`` (5), ``max_batch`` (8),
``wait_time`` (ms, 2), ``threads`` (CPU threads of one inference), ``rebatch`` (true: real batches
from an ``.onnx`` file that fixes N=1, see ``megflow_mp.models.backend``; false: chunks of 1).
"""

import json

import numpy as np
from megflow import register

from megflow_mp.models import Classifier


@register(inputs=["inp"], outputs=["out"])
class BatchClassify:
    def __init__(self, name, args):
        if not args.get("model"):
            raise ValueError(f"node {name!r}: arg 'model' (a MobileNetV2 .onnx or .mge file) is required")
        self.max_batch, self.wait_time = int(args.get("max_batch", 8)), float(args.get("wait_time", 2))
        if self.max_batch < 1 or self.wait_time < 0:
            raise ValueError(f"node {name!r}: expected max_batch >= 1 and wait_time >= 0 (ms), got "
                             f"{self.max_batch} and {self.wait_time}")
        self.classifier = Classifier(args["model"], topk=int(args.get("topk", 5)), threads=args.get("threads"),
                                     rebatch=bool(args.get("rebatch", False)))
        self.classifier.classify([np.zeros((224, 224, 3), np.uint8)] * 2)  # warm up (one and two at once)

    def exec(self):
        envelopes, _ = self.inp.batch_recv(self.max_batch, self.wait_time)
        if not envelopes:
            return
        tops = self.classifier.classify([e.msg["data"] for e in envelopes])
        for envelope, top in zip(envelopes, tops):
            answer = {"extra_data": envelope.msg.get("extra_data"), "batch": len(envelopes),
                      "top": [{"label": label, "score": round(score, 6)} for label, score in top]}
            self.out.send(envelope.repack(json.dumps(answer)))
