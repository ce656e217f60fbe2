"""Track: one :class:`megflow_mp.models.IouTracker` per stream (a node of the stream's subgraph).

In: Detect's sampled frames ``{'data': frame, 'items': [Detection]}``, in frame order (``partial_id``).
Out, for a frame where some track was seen or ended: ``{'data': frame, 'frame': index, 'seen': [{'id',
'box', 'score'}], 'ended': [{'id', 'first', 'last', 'hits'}]}`` (``first``/``last``: frame indices of
the track's first and latest detection, ``hits``: its detections). A track ends ``max_missed`` + 1
sampled frames after its object was last seen, or when the stream ends: then one last message
without a frame ends every live track. A frame older than one already tracked is dropped with a warning.

Args: ``iou`` (0.3: least overlap continuing a track), ``max_missed`` (3 sampled frames),
``every_frame`` (false; true: a message for every sampled frame, also when nothing was seen, so a
drawing node knows the frame has no cat).
"""

import logging

from megflow import Envelope, register

from megflow_mp.models import IouTracker

log = logging.getLogger(__name__)


def _ended(tracks) -> list[dict]:
    return [{"id": t.id, "first": t.first, "last": t.last, "hits": t.hits} for t in tracks]


@register(inputs=["inp"], outputs=["out"])
class Track:
    def __init__(self, name, args):
        self.name = name
        self.tracker = IouTracker(iou=float(args.get("iou", 0.3)), max_missed=int(args.get("max_missed", 3)))
        self.every_frame = bool(args.get("every_frame", False))
        self.info = None  # the latest frame's envelope info: the end-of-stream message goes with it
        self.frame = -1

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            ended = self.tracker.finish()
            if ended and self.info is not None:
                self.out.send(Envelope.pack({"frame": self.frame, "seen": [], "ended": _ended(ended)}, info=self.info))
            return
        index = envelope.partial_id or 0
        if index <= self.frame:
            log.warning("Track %r: stream %s frame %d after frame %d; dropped (detection nodes must keep the "
                        "frame order: cloned = 1)", self.name, envelope.from_addr, index, self.frame)
            return
        self.frame, self.info = index, envelope.info()
        msg = envelope.msg
        update = self.tracker.update(msg.get("items", []), index)
        seen = [{"id": t.id, "box": t.box, "score": t.detection.score} for t in update.live if t.missed == 0]
        if seen or update.ended or self.every_frame:
            self.out.send(envelope.repack({"data": msg["data"], "frame": index, "seen": seen,
                                           "ended": _ended(update.ended)}))
