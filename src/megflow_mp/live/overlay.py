"""Helpers for the drawing nodes of apps that show their results live (before a Visualize node).

Detection often runs on every N-th frame only, and its results come back later than the frame.
:class:`FrameSync` holds a stream's frames until the results of a later (or the same) frame are
known, then gives every held frame its boxes: those of the result for the frame itself, and for the
frames in between two results, boxes moved linearly from one result to the next (matched by
``Box.key``, e.g. a track id), so boxes glide instead of jumping every N frames. At most
``max_pending`` frames are held: older ones go out with the latest boxes (results that never come,
or come very late, delay the picture by at most that many frames).

:func:`draw_boxes` draws rectangles with a label on a copy of a frame (the frame itself may still be
read by other nodes of the graph) and returns the copy.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import cv2
import numpy as np

GREEN, RED, YELLOW, WHITE = (0, 200, 0), (0, 0, 255), (0, 220, 255), (255, 255, 255)


@dataclass(frozen=True)
class Box:
    """A rectangle to draw: ``xyxy`` in pixels, ``text`` above it, ``color`` BGR; ``key`` matches the
    same object across results (None: never interpolated)."""

    xyxy: tuple[float, float, float, float]
    text: str = ""
    color: tuple[int, int, int] = GREEN
    key: object = None


def _between(a: list[Box], b: list[Box], t: float) -> list[Box]:
    """Boxes at fraction ``t`` of the way from result ``a`` to result ``b``: objects in both move,
    objects only in ``a`` stay where they were (they are gone at ``b``)."""
    later = {box.key: box for box in b if box.key is not None}
    out = []
    for box in a:
        end = later.get(box.key) if box.key is not None else None
        if end is None:
            out.append(box)
        else:
            xyxy = tuple(p + (q - p) * t for p, q in zip(box.xyxy, end.xyxy))
            out.append(replace(end, xyxy=xyxy))
    return out


class FrameSync:
    """Frames waiting for their boxes (one stream, frames in index order; not thread-safe)."""

    def __init__(self, max_pending: int = 90):
        self.max_pending = int(max_pending)
        self.frames: deque = deque()  # (index, frame, extra) in arrival order
        self.last_index: int | None = None  # index of the latest result
        self.last_boxes: list[Box] = []

    def add_frame(self, index: int, frame: np.ndarray, extra=None) -> list[tuple]:
        """Hold a frame; returns frames released because too many are held ``[(index, frame, extra, boxes)]``."""
        if self.last_index is not None and index <= self.last_index:
            return [(index, frame, extra, self.last_boxes)]  # its result is known already
        self.frames.append((index, frame, extra))
        out = []
        while len(self.frames) > self.max_pending:
            i, f, e = self.frames.popleft()
            out.append((i, f, e, self.last_boxes))
        return out

    def add_result(self, index: int, boxes: list[Box]) -> list[tuple]:
        """The boxes of frame ``index``; returns the frames now ready, ``[(index, frame, extra, boxes)]``."""
        start, before = self.last_index, self.last_boxes
        out = []
        while self.frames and self.frames[0][0] <= index:
            i, f, e = self.frames.popleft()
            if i == index or start is None or index == start:
                out.append((i, f, e, boxes if i == index else before))
            else:
                out.append((i, f, e, _between(before, boxes, (i - start) / (index - start))))
        self.last_index, self.last_boxes = index, boxes
        return out

    def flush(self) -> list[tuple]:
        """Every held frame, with the latest boxes (the stream ended)."""
        out = [(i, f, e, self.last_boxes) for i, f, e in self.frames]
        self.frames.clear()
        return out


def draw_boxes(frame: np.ndarray, boxes: list[Box], thickness: int = 3) -> np.ndarray:
    """A copy of ``frame`` (BGR) with each box and its label drawn."""
    out = frame.copy()
    scale = max(0.5, out.shape[0] / 1000)
    for box in boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in box.xyxy)
        cv2.rectangle(out, (x0, y0), (x1, y1), box.color, thickness)
        if box.text:
            (w, h), base = cv2.getTextSize(box.text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
            top = max(0, y0 - h - base - 4)
            cv2.rectangle(out, (x0, top), (x0 + w + 6, top + h + base + 4), box.color, -1)
            cv2.putText(out, box.text, (x0 + 3, top + h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, WHITE, 2, cv2.LINE_AA)
    return out
