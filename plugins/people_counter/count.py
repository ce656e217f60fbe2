"""CountPeople: one stream's count of people, as JSON messages and as boxes on the live view.

One instance per stream (it sits in the stream's subgraph), so its tracker follows that stream
only. Input: DetectPeople's message. Outputs: ``out``, one JSON string per frame,
``{"stream": 0, "frame": 12, "people": 3, "seen": 3}`` (``people``: in this frame; ``seen``: distinct
people tracked since the stream began), read with ``GET /get_msgs/{id}``; ``frame``, a copy of the
frame with each person boxed (label: track id and score) and the count written in the corner, for
a ``Visualize`` node (``/view/{id}``). Args: ``iou`` (least overlap that continues a track, 0.3),
``max_missed`` (frames a person may be missed before their track ends, 5).
"""

import json

import cv2
from megflow import register

from megflow_mp.live.overlay import GREEN, WHITE, Box, draw_boxes
from megflow_mp.models import Detection, IouTracker


@register(inputs=["inp"], outputs=["out", "frame"])
class CountPeople:
    def __init__(self, name, args):
        self.tracker = IouTracker(iou=float(args.get("iou", 0.3)), max_missed=int(args.get("max_missed", 5)))
        self.seen = 0

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        people = [Detection(tuple(p["box"]), p["score"], 0, "person") for p in msg["people"]]
        update = self.tracker.update(people, envelope.partial_id)
        self.seen += len(update.new)
        shown = [t for t in update.live if t.missed == 0]  # seen in this frame
        count = {"stream": envelope.from_addr, "frame": envelope.partial_id, "people": len(people),
                 "seen": self.seen}
        self.out.send(envelope.repack(json.dumps(count)))
        boxes = [Box(t.box, f"#{t.id} {t.detection.score:.2f}", GREEN, key=t.id) for t in shown]
        picture = draw_boxes(msg["data"], boxes)
        cv2.putText(picture, f"people: {len(people)}  seen: {self.seen}", (12, 32), cv2.FONT_HERSHEY_SIMPLEX,
                    0.9, WHITE, 2, cv2.LINE_AA)
        self.frame.send(envelope.repack({"data": picture}))
