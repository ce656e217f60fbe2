"""Alert: one JSON alert the first time a vehicle track is confirmed (one instance per stream).

Input ``msg``: ``{'tracks': [Track, ...], 'ended': [id, ...]}`` (from Track). A track whose label is
in ``labels`` is confirmed when it has been detected in ``min_hits`` frames; a box seen in fewer
frames (a spurious detection) never alerts. Each confirmed track alerts once, in the frame that
confirms it: the envelope is repacked with the JSON string
``{"stream": 0, "frame": 12, "track": 3, "label": "motorbike", "score": 0.84, "box": [x0, y0, x1, y1]}``
(``stream`` = the envelope's ``from_addr``, ``frame`` = its ``partial_id``, box in frame pixels). A
frame without alerts sends nothing.

Args: ``labels`` (default ``["bicycle", "motorbike"]``), ``min_hits`` (default 3).
"""

import json

from megflow import register

from megflow_mp.models import Track as TrackState

from .detect import positive_int

VEHICLES = ("bicycle", "motorbike")


def alert_message(stream, frame, track: TrackState) -> str:
    """The alert for ``track`` as a JSON string (see the module docstring)."""
    det = track.detection
    return json.dumps({"stream": stream, "frame": frame, "track": track.id, "label": det.label,
                       "score": round(det.score, 4), "box": [round(v, 1) for v in det.box]})


@register(inputs=["inp"], outputs=["out"])
class Alert:
    def __init__(self, name, args):
        labels = args.get("labels", list(VEHICLES))
        if isinstance(labels, str) or not labels or not all(isinstance(x, str) for x in labels):
            raise ValueError(f"node {name!r}: labels must be a non-empty list of class names, got {labels!r}")
        self.labels = set(labels)
        self.min_hits = positive_int(args, "min_hits", 3, name)
        self.alerted: set[int] = set()

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        if not isinstance(msg, dict) or "tracks" not in msg:
            raise ValueError(f"Alert: expected {{'tracks': [...], 'ended': [...]}} (Track -> Alert), got {msg!r:.80}")
        self.alerted.difference_update(msg.get("ended", ()))
        for track in msg["tracks"]:
            if track.id not in self.alerted and track.label in self.labels and track.hits >= self.min_hits:
                self.alerted.add(track.id)
                self.out.send(envelope.repack(alert_message(envelope.from_addr, envelope.partial_id, track)))
