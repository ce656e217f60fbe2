"""Reid: the appearance embedding of a crop (MobileNetV2 feature cut, L2-normalised).

In: a message with ``crop`` (``HxWx3`` BGR); out: the same message with ``feature`` (1-D float32,
unit norm) in place of ``crop``. Messages without a crop (an ``error`` to pass on) go through as they
are. Args: ``path`` (``.onnx`` or ``.mge``), ``device``, ``device_id``, ``threads``. Declared at top
level in the video app, one node serves every stream.
"""

import logging

import numpy as np

from megflow import register

from megflow_mp.models import Embedder

log = logging.getLogger(__name__)


@register(inputs=["inp"], outputs=["out"])
class Reid:
    def __init__(self, name, args):
        if "path" not in args:
            raise ValueError(f"Reid {name!r}: the model file is missing: "
                             f"set path = \"models/mobilenet_v2_1.0_224_feat.onnx\"")
        threads = args.get("threads")
        self.embedder = Embedder(args["path"], device=str(args.get("device", "cpu")),
                                 device_id=int(args.get("device_id", 0)),
                                 threads=None if threads is None else int(threads))
        self.embedder.embed(np.zeros((*self.embedder.size, 3), np.uint8))  # warm-up: the first run is slow
        log.info("Reid %r: %r", name, self.embedder.model)

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        if msg.get("crop") is not None:
            msg["feature"] = self.embedder.embed(msg.pop("crop"))[0]
        self.out.send(envelope)
