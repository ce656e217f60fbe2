"""Input images of the model wrappers: what is accepted and how it is normalised.

Contracts
---------
* An image is an ``np.ndarray`` ``HxWx3`` in BGR order (OpenCV's and the engine's frame layout),
  ``uint8`` 0..255 (a float array is taken as 0..255 too). ``HxW`` and ``HxWx1`` (grey) are expanded
  to three channels; ``HxWx4`` (BGRA) loses its alpha. Anything else is a
  :class:`~megflow_mp.models.backend.ModelError` naming the shape or type it got.
* ``imgs`` arguments take one image, a list/tuple of images (sizes may differ), or an ``NxHxWxC``
  array; :func:`as_images` says whether a single image was given so wrappers can answer in kind.
* Nothing here modifies the caller's arrays.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ModelError

__all__ = ["to_bgr", "as_images", "resize"]


def to_bgr(img, what: str = "image") -> np.ndarray:
    """Return ``img`` as an ``HxWx3`` array (no copy when it already is one)."""
    if not isinstance(img, np.ndarray):
        raise ModelError(f"{what} must be a numpy array (HxWx3 BGR), got {type(img).__name__}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ModelError(f"{what} must be HxWx3 (BGR), HxW or HxWx4, got shape {tuple(img.shape)}")
    if img.dtype == np.bool_ or not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
        raise ModelError(f"{what} must hold uint8 (or float 0..255) pixels, got dtype {img.dtype}")
    if img.dtype not in (np.uint8, np.float32):
        img = img.astype(np.float32)  # cv2.resize takes uint8 and float32
    return img


def as_images(imgs) -> tuple[list[np.ndarray], bool]:
    """``(images, single)``: the images as a list of ``HxWx3`` arrays, and whether one image was given."""
    if isinstance(imgs, np.ndarray):
        if imgs.ndim in (2, 3):
            return [to_bgr(imgs)], True
        if imgs.ndim == 4:
            return [to_bgr(im, f"image {i}") for i, im in enumerate(imgs)], False
        raise ModelError(f"images must be HxWx3, a list of them or NxHxWx3, got shape {tuple(imgs.shape)}")
    if isinstance(imgs, (list, tuple)):
        return [to_bgr(im, f"image {i}") for i, im in enumerate(imgs)], False
    raise ModelError(f"images must be a numpy array or a list of them, got {type(imgs).__name__}")


def resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bilinear resize to ``w x h`` (no-op when already that size)."""
    if img.shape[1] == w and img.shape[0] == h:
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
