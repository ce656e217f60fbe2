"""Track: the detections of one stream linked into tracks with stable ids (one instance per stream).

Input ``msg``: ``{'detections': [Detection, ...]}`` (from Detect), in frame order. Output, one per
input: ``{'tracks': [Track, ...], 'ended': [track id, ...]}``: ``tracks`` are the tracks matched in
this frame (:class:`megflow_mp.models.Track`: ``id``, ``detection``, ``hits``, ``first``, ``last``),
``ended`` the ids of tracks that left the frame (unmatched for more than ``max_missed`` detected
frames). ``hits`` counts the detected frames of a track, so a box seen once has ``hits == 1``.

A frame older than the last one seen (possible only when the shared detector is cloned and its
replicas overtake each other) cannot be tracked: it is dropped, and the first drop is logged.

Args: ``iou`` (least overlap that continues a track, default 0.3), ``max_missed`` (default 2).
"""

import logging

from megflow import register

from megflow_mp.models import IouTracker

log = logging.getLogger("electric_bicycle")


@register(inputs=["inp"], outputs=["out"])
class Track:
    def __init__(self, name, args):
        self.name = name
        self.tracker = IouTracker(iou=float(args.get("iou", 0.3)), max_missed=int(args.get("max_missed", 2)))
        self.last_frame = -1
        self.late = 0

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        if not isinstance(msg, dict) or not isinstance(msg.get("detections"), list):
            raise ValueError(f"Track: expected {{'detections': [Detection, ...]}} (Detect -> Track), got {msg!r:.80}")
        frame = envelope.partial_id if envelope.partial_id is not None else self.last_frame + 1
        if frame <= self.last_frame:
            self.late += 1
            if self.late == 1:
                log.warning("%s: frame %s of stream %s came after frame %s and is not tracked (is the detector "
                            "cloned?)", self.name, frame, envelope.from_addr, self.last_frame)
            return
        self.last_frame = frame
        update = self.tracker.update(msg["detections"], frame)
        seen = [t for t in update.live if t.missed == 0]
        self.out.send(envelope.repack({"tracks": seen, "ended": [t.id for t in update.ended]}))
