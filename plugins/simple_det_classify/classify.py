"""Classify: the crops of many frames, from any streams, classified in dynamic batches.

Each call takes up to ``max_batch`` envelopes with ``batch_recv``, waiting at most ``wait_time`` ms
after the first for more; a batch may mix frames of several streams (shared node) and frames
without objects. All their crops go through the classifier in one call (the models layer runs them
in chunks of the model file's batch size), and every envelope is repacked with its own results and
sent back to its own stream: ``msg['objects'][i]['classes']`` = the top-k ``{'label', 'score'}`` of
crop ``i``, ``msg['batch']`` = how many frames were classified together. ``msg['crops']`` is dropped.

Args: ``model`` (MobileNetV2 ``.onnx`` or ``.mge``), ``topk`` (default 3), ``max_batch`` (frames per
batch, default 8), ``wait_time`` (ms, default 10), ``device``, ``device_id``, ``threads``.
"""

import numpy as np
from megflow import register

from megflow_mp.models import Classifier


def classify_groups(classifier: Classifier, groups: list[list[np.ndarray]]) -> list[list[list[tuple[str, float]]]]:
    """Classify every image of every group in one call; answer per group, per image, the top-k
    ``(label, score)`` pairs. ``groups[i]`` may be empty (its answer is then ``[]``)."""
    flat = [image for group in groups for image in group]
    tops = classifier.classify(flat) if flat else []
    out, start = [], 0
    for group in groups:
        out.append(tops[start: start + len(group)])
        start += len(group)
    return out


def check_message(msg) -> None:
    """Raise ValueError unless ``msg`` is a dict with as many ``crops`` as ``objects`` (what Crop sends)."""
    if not isinstance(msg, dict) or "crops" not in msg or "objects" not in msg:
        got = f"keys {sorted(msg)}" if isinstance(msg, dict) else type(msg).__name__
        raise ValueError(f"Classify: expected messages with 'objects' and 'crops' (Detect -> Crop -> Classify), "
                         f"got {got}")
    if len(msg["crops"]) != len(msg["objects"]):
        raise ValueError(f"Classify: {len(msg['crops'])} crops for {len(msg['objects'])} objects")


@register(inputs=["inp"], outputs=["out"])
class Classify:
    def __init__(self, name, args):
        if not args.get("model"):
            raise ValueError(f"node {name!r}: arg 'model' (path of a MobileNetV2 .onnx or .mge file) is required")
        self.max_batch, self.wait_time = int(args.get("max_batch", 8)), float(args.get("wait_time", 10))
        if self.max_batch < 1 or self.wait_time < 0:
            raise ValueError(f"node {name!r}: expected max_batch >= 1 and wait_time >= 0 (ms), got "
                             f"{self.max_batch} and {self.wait_time}")
        self.classifier = Classifier(args["model"], topk=int(args.get("topk", 3)), device=args.get("device", "cpu"),
                                     device_id=int(args.get("device_id", 0)), threads=args.get("threads"))
        self.classifier.classify(np.zeros((64, 64, 3), np.uint8))  # warm up

    def exec(self):
        envelopes, _ = self.inp.batch_recv(self.max_batch, self.wait_time)
        if not envelopes:
            return
        for e in envelopes:
            check_message(e.msg)
        results = classify_groups(self.classifier, [e.msg.pop("crops") for e in envelopes])
        for envelope, tops in zip(envelopes, results):
            msg = envelope.msg
            for obj, top in zip(msg["objects"], tops):
                obj["classes"] = [{"label": label, "score": round(score, 4)} for label, score in top]
            msg["batch"] = len(envelopes)
            self.out.send(envelope.repack(msg))
