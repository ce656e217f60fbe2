"""Boxes and crops: which detection of a cat is the best one, and cutting it out of a frame."""

from __future__ import annotations

import numpy as np

__all__ = ["quality", "crop", "box_list"]


def quality(box, score: float) -> float:
    """How good a view of an object a box is: its area in pixels times its detection score (the
    largest, most confident box wins)."""
    x0, y0, x1, y1 = box
    return max(0.0, x1 - x0) * max(0.0, y1 - y0) * float(score)


def crop(frame: np.ndarray, box) -> np.ndarray | None:
    """A copy of ``frame`` inside ``box`` (``x0, y0, x1, y1`` pixels, rounded outwards and clipped to the
    frame); None when the clipped box is empty. The copy owns its pixels, so the frame may be released."""
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x1 <= x0 or y1 <= y0:
        return None
    return frame[y0:y1, x0:x1].copy()


def box_list(box) -> list[float]:
    """A box as a JSON-friendly list of 4 floats rounded to 0.1 pixel."""
    return [round(float(v), 1) for v in box]
