"""Detect: YOLOX on every ``interval``-th frame; the detections ride along with the frame.

In: ``{'data': HxWx3 BGR, ...}`` (ImageServer, ImageInput, VideoServer and VideoInput frames; the
frame index is ``partial_id``). Out: the same message with ``items`` = list of
:class:`megflow_mp.models.Detection` (best score first), only for frames whose
``partial_id % interval == 0`` (other frames are dropped: the tracker counts sampled frames).

Args: ``path`` (``.onnx`` or ``.mge``), ``conf`` (0.25), ``nms`` (0.45), ``tsize`` (416), ``labels``
(class names kept, e.g. ``["cat"]``; all when absent), ``interval`` (1), ``device`` ("cpu"),
``device_id`` (0), ``threads`` (library default). Declared at top level, one node serves every stream.
"""

import logging

import numpy as np

from megflow import register

from megflow_mp.models import Detector

log = logging.getLogger(__name__)


@register(inputs=["inp"], outputs=["out"])
class Detect:
    def __init__(self, name, args):
        if "path" not in args:
            raise ValueError(f"Detect {name!r}: the model file is missing: set path = \"models/yolox_nano.onnx\"")
        self.interval = int(args.get("interval", 1))
        if self.interval < 1:
            raise ValueError(f"Detect {name!r}: interval must be >= 1, got {self.interval}")
        labels = args.get("labels")
        self.labels = None if labels is None else {str(x) for x in ([labels] if isinstance(labels, str) else labels)}
        threads = args.get("threads")
        self.detector = Detector(args["path"], conf=float(args.get("conf", 0.25)), nms=float(args.get("nms", 0.45)),
                                 tsize=int(args.get("tsize", 416)), device=str(args.get("device", "cpu")),
                                 device_id=int(args.get("device_id", 0)),
                                 threads=None if threads is None else int(threads))
        unknown = self.labels - set(self.detector.labels) if self.labels else set()
        if unknown:
            raise ValueError(f"Detect {name!r}: unknown labels {sorted(unknown)}; the model knows "
                             f"{', '.join(self.detector.labels)}")
        size = self.detector.tsize
        self.detector.detect(np.zeros((size, size, 3), np.uint8))  # warm-up: the first run is slow
        log.info("Detect %r: %r, every %d frame(s), labels %s", name, self.detector.model, self.interval,
                 sorted(self.labels) if self.labels else "all")

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        if (envelope.partial_id or 0) % self.interval:
            return
        msg = envelope.msg
        items = self.detector.detect(msg["data"])
        msg["items"] = [d for d in items if d.label in self.labels] if self.labels else items
        self.out.send(envelope)
