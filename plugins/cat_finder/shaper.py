"""Shaper: the best view of each track, handed on once the track has ended (a node of the stream's subgraph).

In: Track's messages. For every seen track it keeps the crop of its best box so far (largest and most
confident: :func:`crops.quality`). When a track ends with at least ``min_hits`` detections (fewer is
a passing false detection), one message goes out: ``{'crop', 'track', 'first_frame', 'last_frame',
'hits', 'best_frame', 'box', 'score'}``; shorter tracks are forgotten. Only the crops of live tracks
are held. Args: ``mode`` ("BEST", the only one), ``min_hits`` (2).
"""

import logging

from megflow import register

from .crops import box_list, crop, quality

log = logging.getLogger(__name__)
MODES = ("BEST",)


@register(inputs=["inp"], outputs=["out"])
class Shaper:
    def __init__(self, name, args):
        self.name = name
        self.mode = str(args.get("mode", "BEST")).upper()
        if self.mode not in MODES:
            raise ValueError(f"Shaper {name!r}: mode {self.mode!r} is not supported; use one of {MODES}")
        self.min_hits = int(args.get("min_hits", 2))
        if self.min_hits < 1:
            raise ValueError(f"Shaper {name!r}: min_hits must be >= 1, got {self.min_hits}")
        self.best: dict[int, dict] = {}  # track id -> best view so far

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        for seen in msg["seen"]:
            q = quality(seen["box"], seen["score"])
            kept = self.best.get(seen["id"])
            if kept is None or q > kept["quality"]:
                pixels = crop(msg["data"], seen["box"])
                if pixels is not None:
                    self.best[seen["id"]] = {"quality": q, "crop": pixels, "box": box_list(seen["box"]),
                                             "score": round(float(seen["score"]), 4), "best_frame": msg["frame"]}
        for ended in msg["ended"]:
            kept = self.best.pop(ended["id"], None)
            if kept is None:
                continue
            if ended["hits"] < self.min_hits:
                log.info("Shaper %r: stream %s track %d seen %d time(s) (< min_hits %d); ignored", self.name,
                         envelope.from_addr, ended["id"], ended["hits"], self.min_hits)
                continue
            del kept["quality"]
            self.out.send(envelope.repack({**kept, "track": ended["id"], "first_frame": ended["first"],
                                           "last_frame": ended["last"], "hits": ended["hits"]}))
