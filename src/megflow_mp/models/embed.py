"""Appearance embeddings for re-identification: MobileNetV2's 1280-d feature cut, or the person re-id net.

Contracts
---------
* ``kind="mobilenet"`` (``mobilenet_v2_1.0_224_feat``): pre-processing as the classifier
  (224 x 224, RGB, ``x / 127.5 - 1``, NCHW), 1280-d output; good for telling animals apart.
* ``kind="reid"`` (``person-reidentification-retail-0288``): resize to 128 wide x 256 high, BGR
  0..255 float32, NHWC; 256-d output; for person crops.
* ``kind=None`` picks by file name (``reid``/``reidentification`` -> reid, ``mobilenet`` -> mobilenet),
  then by input layout (``N,H,W,3`` -> reid, ``N,3,H,W`` -> mobilenet).
* :meth:`Embedder.embed` takes one image, a list or an ``NxHxWx3`` array and answers ``(N, D)``
  float32 rows of unit L2 norm (an all-zero output stays zero). A batch equals the images one by one.
* :func:`cosine`: cosine similarity; two vectors give a float, ``(N, D)`` and ``(M, D)`` an ``(N, M)``
  matrix. Inputs need not be normalised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError
from .backend import load_model
from .classify import input_size, mobilenet_input
from .images import as_images, resize

__all__ = ["Embedder", "cosine", "l2_normalize", "KINDS"]

KINDS = ("mobilenet", "reid")
CLASSIFIER_CLASSES = 1001  # the full MobileNetV2 classifier given instead of its feature cut


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """``x`` divided by its L2 norm along ``axis`` (rows of norm 0 stay 0)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)


def cosine(a, b):
    """Cosine similarity: float for two vectors, ``(N, M)`` for ``(N, D)`` and ``(M, D)``."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if a.shape[-1] != b.shape[-1]:
        raise ModelError(f"cosine of vectors of different sizes: {a.shape} vs {b.shape}")
    sim = l2_normalize(np.atleast_2d(a)) @ l2_normalize(np.atleast_2d(b)).T
    return float(sim[0, 0]) if a.ndim == 1 and b.ndim == 1 else sim


def _guess_kind(path: Path, shape: tuple) -> str:
    name = path.name.lower()
    if "reid" in name or "reidentification" in name:
        return "reid"
    if "mobilenet" in name:
        return "mobilenet"
    if len(shape) == 4 and shape[3] == 3:
        return "reid"
    if len(shape) == 4 and shape[1] == 3:
        return "mobilenet"
    raise ModelError(f"{path}: cannot tell the embedding kind from the name or the input {shape}; "
                     f"pass kind= one of {KINDS}")


class Embedder:
    """An embedding model on a ``.onnx`` or ``.mge`` file; ``kind`` as in the module docstring."""

    def __init__(self, path, kind: str | None = None, device: str = "cpu", device_id: int = 0,
                 threads: int | None = None):
        self.model = load_model(path, device=device, device_id=device_id, threads=threads)
        if kind is not None and kind not in KINDS:
            raise ModelError(f"unknown embedding kind {kind!r}; expected one of {KINDS}")
        self.kind = kind or _guess_kind(Path(path), self.model.input_shape)
        self.size = input_size(self.model, "NHWC" if self.kind == "reid" else "NCHW")  # (h, w)
        if self.kind == "reid" and self.model.input_shape[1] is None:
            self.size = (256, 128)
        self.dim: int | None = None  # known after the first call

    def preprocess(self, images: list[np.ndarray]) -> np.ndarray:
        """The network input for ``HxWx3`` BGR images."""
        h, w = self.size
        if self.kind == "mobilenet":
            if h != w:
                raise ModelError(f"{self.model.path}: expected a square input, got {self.model.input_shape}")
            return mobilenet_input(images, h)
        return np.stack([resize(im, w, h).astype(np.float32) for im in images])

    def embed(self, imgs) -> np.ndarray:
        """``(N, D)`` float32 embeddings of unit L2 norm, one row per image of ``imgs`` (one ``HxWx3``
        BGR image, a list of them, e.g. crops of any sizes, or an ``NxHxWx3`` array). ``D`` = 1280
        for ``mobilenet`` (input ``(3, 224, 224)`` RGB in -1..1), 256 for ``reid`` (input
        ``(256, 128, 3)`` BGR 0..255). Compare rows with :func:`cosine`."""
        images, _ = as_images(imgs)
        if not images:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        (out,) = self.model.infer_batch(self.preprocess(images))[:1]
        out = out.reshape(len(images), -1)
        if self.kind == "mobilenet" and out.shape[1] == CLASSIFIER_CLASSES:
            raise ModelError(f"{self.model.path}: this is the MobileNetV2 classifier (1001 softmax outputs); "
                             f"embeddings come from its feature cut, mobilenet_v2_1.0_224_feat")
        self.dim = out.shape[1]
        return l2_normalize(out)
