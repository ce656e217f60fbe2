"""YOLOX object detection (the ``yolox_nano`` COCO-80 model, ONNX or MegEngine).

Contracts
---------
* Pre-processing: letterbox to ``tsize x tsize`` (scale ``r = min(tsize/h, tsize/w)``, bilinear,
  image at the top-left, the rest filled with 114), BGR 0..255 as float32 NCHW, no normalisation.
* Output ``(N, A, 85)``, ``A = sum((tsize/s)^2 for s in 8, 16, 32)``: per anchor ``cx, cy`` relative
  to its grid cell (``(v + grid) * stride``), ``w, h`` as logs (``exp(v) * stride``), objectness, 80
  class scores (already sigmoids). A detection's score is objectness times class score.
* Every (anchor, class) pair scoring at least ``conf`` is a candidate; non-maximum suppression runs
  per class (IoU > ``nms`` suppresses); boxes are divided by ``r`` and clipped to the image.
* :meth:`Detector.detect` answers ``list[Detection]`` for one image, best score first (at most
  ``max_det``); :meth:`Detector.detect_batch` a list of such lists, one per image, equal to calling
  ``detect`` on each (the backend runs chunks of the model's batch size, see ``backend``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError
from .backend import load_model
from .images import as_images, resize, to_bgr
from .labels import COCO_LABELS, as_labels

__all__ = ["Detection", "Detector", "letterbox", "nms"]

STRIDES = (8, 16, 32)
PAD_VALUE = 114


@dataclass(frozen=True)
class Detection:
    """One object: ``box`` = ``(x0, y0, x1, y1)`` in pixels of the original image, ``score`` in 0..1,
    ``cls`` the class index, ``label`` its name."""

    box: tuple[float, float, float, float]
    score: float
    cls: int
    label: str


def letterbox(img: np.ndarray, tsize: int) -> tuple[np.ndarray, float]:
    """``(3 x tsize x tsize float32 BGR, r)``: ``img`` scaled by ``r`` into the top-left corner."""
    h, w = img.shape[:2]
    r = min(tsize / h, tsize / w)
    nw, nh = max(1, int(w * r)), max(1, int(h * r))
    out = np.full((tsize, tsize, 3), PAD_VALUE, dtype=np.float32)
    out[:nh, :nw] = resize(img, nw, nh)
    return out.transpose(2, 0, 1), r


def nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> np.ndarray:
    """Greedy NMS on ``(K, 4)`` xyxy boxes: indices kept, best score first."""
    x0, y0, x1, y1 = boxes.T
    areas = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= thresh]
    return np.asarray(keep, dtype=np.int64)


class Detector:
    """YOLOX on a ``.onnx`` or ``.mge`` file.

    ``conf``: minimum score; ``nms``: IoU threshold; ``tsize``: the network's square input size
    (must match the file); ``classes``: ``None`` (``labels/coco_classes.txt`` near the model), a label
    file path or a list of names; ``device``/``device_id``/``threads``: see ``load_model``.
    """

    def __init__(self, path, conf: float = 0.25, nms: float = 0.45, tsize: int = 416, classes=None,
                 device: str = "cpu", device_id: int = 0, threads: int | None = None, max_det: int = 300):
        self.model = load_model(path, device=device, device_id=device_id, threads=threads)
        shape = self.model.input_shape
        if len(shape) != 4 or shape[1] != 3 or any(d not in (None, tsize) for d in shape[2:]):
            raise ModelError(f"{path}: expected a YOLOX input (N, 3, {tsize}, {tsize}), the file declares {shape}")
        self.conf, self.nms_thresh, self.tsize, self.max_det = float(conf), float(nms), int(tsize), int(max_det)
        self.labels = as_labels(classes, path, COCO_LABELS)
        grids, strides = [], []
        for s in STRIDES:
            n = self.tsize // s
            yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            grids.append(np.stack([xv, yv], axis=-1).reshape(-1, 2))
            strides.append(np.full((n * n, 1), s))
        self._grid = np.concatenate(grids).astype(np.float32)
        self._stride = np.concatenate(strides).astype(np.float32)

    def detect(self, img) -> list[Detection]:
        """Detections in one image, best score first (at most ``max_det``).

        ``img``: ``HxWx3`` BGR ``uint8`` (a frame as the engine gives it; an ``HxW`` grey image is
        repeated into three channels). Each :class:`Detection` has ``box`` ``(x0, y0, x1, y1)`` in pixels of ``img``
        (clipped to it), ``score`` in 0..1 (objectness times class score, at least ``conf``),
        ``cls`` the COCO-80 index (``person`` = 0) and ``label`` its name."""
        return self.detect_batch([to_bgr(img)])[0]

    def detect_batch(self, imgs) -> list[list[Detection]]:
        """One list of detections per image, as :meth:`detect` gives them.

        ``imgs``: a list of ``HxWx3`` BGR images (sizes may differ) or an ``NxHxWx3`` array. Each
        is letterboxed to ``(3, tsize, tsize)``; the network's ``(N, A, 85)`` output is decoded per
        image (``A`` = 3549 anchors at ``tsize`` 416)."""
        images, _ = as_images(imgs)
        if not images:
            return []
        boxes = [letterbox(im, self.tsize) for im in images]
        x = np.stack([b for b, _ in boxes])
        (raw,) = self.model.infer_batch(x)[:1]
        return [self.postprocess(raw[i], r, im.shape[:2]) for i, ((_, r), im) in enumerate(zip(boxes, images))]

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """``(A, 4)`` xyxy boxes in network-input pixels from one sample's raw ``(A, 85)`` output."""
        if raw.ndim != 2 or raw.shape[0] != self._grid.shape[0] or raw.shape[1] < 6:
            raise ModelError(f"{self.model.path}: expected a YOLOX output ({self._grid.shape[0]}, 5 + classes), "
                             f"got {raw.shape}")
        xy = (raw[:, :2] + self._grid) * self._stride
        wh = np.exp(np.minimum(raw[:, 2:4], 20.0)) * self._stride
        return np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)

    def postprocess(self, raw: np.ndarray, r: float, hw: tuple[int, int]) -> list[Detection]:
        """Detections of one sample: decode, score, per-class NMS, scale back by ``r``, clip to ``hw``."""
        boxes = self.decode(raw)
        if raw.shape[1] - 5 != len(self.labels):
            raise ModelError(f"{self.model.path}: the model has {raw.shape[1] - 5} classes, "
                             f"{len(self.labels)} labels were given")
        scores = raw[:, 4:5] * raw[:, 5:]
        anchor, cls = np.nonzero(scores >= self.conf)
        if anchor.size == 0:
            return []
        cand, score = boxes[anchor] / r, scores[anchor, cls]
        keep = np.concatenate([idx[nms(cand[idx], score[idx], self.nms_thresh)]
                               for idx in (np.flatnonzero(cls == c) for c in np.unique(cls))])
        keep = keep[np.argsort(-score[keep], kind="stable")][: self.max_det]
        h, w = hw
        cand[:, [0, 2]] = np.clip(cand[:, [0, 2]], 0, w)
        cand[:, [1, 3]] = np.clip(cand[:, [1, 3]], 0, h)
        return [Detection(box=tuple(float(v) for v in cand[k]), score=float(score[k]), cls=int(cls[k]),
                          label=self.labels[cls[k]]) for k in keep]
