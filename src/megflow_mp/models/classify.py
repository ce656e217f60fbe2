"""MobileNetV2 ImageNet classification (``mobilenet_v2_1.0_224_fp32``, ONNX or MegEngine).

Contracts
---------
* Pre-processing (:func:`mobilenet_input`): resize to the network's input size (224 x 224, bilinear,
  no aspect-ratio keeping), BGR -> RGB, ``x / 127.5 - 1``, float32 NCHW.
* The output is ``(N, 1001)`` softmax probabilities; label ``i`` is line ``i`` of
  ``labels/imagenet_labels.txt`` (0 = ``background``).
* :meth:`Classifier.classify` takes one image, a list of images or an ``NxHxWx3`` array and always
  answers one list per image of ``topk`` ``(label, score)`` pairs, best first. :meth:`Classifier.scores`
  gives the raw ``(N, 1001)`` probabilities. A batch equals the same images one by one.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from .backend import load_model
from .images import as_images, resize
from .labels import IMAGENET_LABELS, as_labels

__all__ = ["Classifier", "mobilenet_input", "input_size"]


def mobilenet_input(images: list[np.ndarray], size: int = 224) -> np.ndarray:
    """``(N, 3, size, size)`` float32 RGB in -1..1 from ``HxWx3`` BGR images (see :mod:`.images`)."""
    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, img in enumerate(images):
        rgb = resize(img, size, size)[:, :, ::-1].astype(np.float32)
        out[i] = (rgb / 127.5 - 1.0).transpose(2, 0, 1)
    return out


def input_size(model, layout: str = "NCHW") -> tuple[int, int]:
    """``(h, w)`` a model's images are resized to; a dynamic size defaults to MobileNetV2's 224."""
    shape = model.input_shape
    ok = len(shape) == 4 and (shape[1] if layout == "NCHW" else shape[3]) in (3, None)
    if not ok:
        raise ModelError(f"{model.path}: expected a {layout} image input with 3 channels, the file declares {shape}")
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    return (h or 224, w or 224)


class Classifier:
    """MobileNetV2 on a ``.onnx`` or ``.mge`` file.

    ``topk``: pairs per image; ``labels``: ``None`` (``labels/imagenet_labels.txt`` near the model), a
    label file path or a list of names; ``device``/``device_id``/``threads``/``rebatch`` (real batches
    from an ``.onnx`` file that fixes ``N``, see ``backend``): see ``load_model``.
    """

    def __init__(self, path, topk: int = 5, labels=None, device: str = "cpu", device_id: int = 0,
                 threads: int | None = None, rebatch: bool = False):
        self.model = load_model(path, device=device, device_id=device_id, threads=threads, rebatch=rebatch)
        self.size = input_size(self.model)
        if self.size[0] != self.size[1]:
            raise ModelError(f"{path}: expected a square input, the file declares {self.model.input_shape}")
        if int(topk) < 1:
            raise ModelError(f"topk must be >= 1, got {topk}")
        self.topk = int(topk)
        self.labels = as_labels(labels, path, IMAGENET_LABELS)

    def scores(self, imgs) -> np.ndarray:
        """``(N, C)`` float32 class probabilities (softmax, ``C`` = 1001 for MobileNetV2, column 0 =
        background), one row per image of ``imgs``: one ``HxWx3`` BGR image, a list of them or an
        ``NxHxWx3`` array (each resized to ``(3, 224, 224)`` RGB in -1..1)."""
        images, _ = as_images(imgs)
        if not images:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        (out,) = self.model.infer_batch(mobilenet_input(images, self.size[0]))[:1]
        out = out.reshape(len(images), -1)
        if out.shape[1] != len(self.labels):
            raise ModelError(f"{self.model.path}: the model has {out.shape[1]} outputs, "
                             f"{len(self.labels)} labels were given")
        return out

    def classify(self, imgs) -> list[list[tuple[str, float]]]:
        """Per image, the ``topk`` ``(label, score)`` pairs, best first; ``imgs`` as :meth:`scores`
        takes them (one image still answers a list of one list)."""
        probs = self.scores(imgs)
        k = min(self.topk, probs.shape[1])
        result = []
        for row in probs:
            top = np.argsort(-row, kind="stable")[:k]
            result.append([(self.labels[i], float(row[i])) for i in top])
        return result
