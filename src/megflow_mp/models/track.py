"""IoU tracking: detections of consecutive (sampled) frames linked into tracks with stable ids.

One :class:`IouTracker` per video stream. Each :meth:`IouTracker.update` takes that frame's
:class:`~megflow_mp.models.detect.Detection` list and matches it greedily to the live tracks (highest
IoU first, same class only, IoU >= ``iou``). Unmatched detections start new tracks; a track not matched
for more than ``max_missed`` consecutive updates has left the frame and is reported once in
``ended``. :meth:`IouTracker.finish` ends every live track (end of stream).

The tracker is pure Python on a handful of boxes per frame; it keeps no image data (a caller that wants
the best crop of a track keeps it itself, keyed by ``Track.id``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .detect import Detection

__all__ = ["Track", "TrackUpdate", "IouTracker", "iou"]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when either is empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """A tracked object: ``id`` unique within its tracker, the latest matched ``detection``,
    ``hits`` = detections matched so far, ``missed`` = consecutive updates without a match,
    ``first``/``last`` = the frame numbers (as given to ``update``) of its first and latest match."""

    id: int
    detection: Detection
    first: int
    last: int
    hits: int = 1
    missed: int = 0

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.detection.box

    @property
    def label(self) -> str:
        return self.detection.label


@dataclass
class TrackUpdate:
    """What one update changed: tracks ``new`` this frame, ``ended`` (left the frame) and all ``live`` ones
    (new ones included), each list in track id order."""

    new: list[Track] = field(default_factory=list)
    ended: list[Track] = field(default_factory=list)
    live: list[Track] = field(default_factory=list)


class IouTracker:
    """Greedy IoU tracker for one stream. ``iou``: the least overlap that continues a track;
    ``max_missed``: updates a track may go unmatched before it ends (0 = ends at its first miss)."""

    def __init__(self, iou: float = 0.3, max_missed: int = 3):
        if not 0.0 < iou <= 1.0:
            raise ValueError(f"iou must be in (0, 1], got {iou}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        self.min_iou, self.max_missed = iou, max_missed
        self._live: dict[int, Track] = {}
        self._next_id = 0
        self._frame = -1

    def update(self, detections: Sequence[Detection], frame: int | None = None) -> TrackUpdate:
        """Match one frame's detections (:class:`~megflow_mp.models.detect.Detection`, e.g. what
        ``Detector.detect`` answers for the frame) to the live tracks; ``frame`` (the frame's number,
        e.g. the envelope's ``partial_id``) defaults to the previous frame number + 1. Returns the
        :class:`TrackUpdate`: tracks ``new`` this frame, ``ended`` (missed more than ``max_missed``
        times) and every ``live`` one; a live track matched this frame has ``missed == 0``."""
        self._frame = self._frame + 1 if frame is None else frame
        pairs = sorted(((iou(t.box, d.box), tid, di) for tid, t in self._live.items()
                        for di, d in enumerate(detections) if t.detection.cls == d.cls), reverse=True)
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        for overlap, tid, di in pairs:
            if overlap < self.min_iou:
                break
            if tid in matched_t or di in matched_d:
                continue
            track = self._live[tid]
            track.detection, track.last, track.hits, track.missed = detections[di], self._frame, track.hits + 1, 0
            matched_t.add(tid)
            matched_d.add(di)
        out = TrackUpdate()
        for tid in sorted(set(self._live) - matched_t):
            track = self._live[tid]
            track.missed += 1
            if track.missed > self.max_missed:
                out.ended.append(self._live.pop(tid))
        for di, det in enumerate(detections):
            if di not in matched_d:
                track = Track(self._next_id, det, self._frame, self._frame)
                self._live[track.id] = track
                self._next_id += 1
                out.new.append(track)
        out.live = [self._live[t] for t in sorted(self._live)]
        return out

    def finish(self) -> list[Track]:
        """End every live track (the stream is over) and return them in id order."""
        ended = [self._live[t] for t in sorted(self._live)]
        self._live.clear()
        return ended

    def __len__(self) -> int:
        return len(self._live)
