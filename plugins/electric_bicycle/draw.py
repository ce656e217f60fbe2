"""Draw: every frame of a stream with its tracks boxed, for a Visualize node (the live view).

Detect runs on every ``interval``-th frame only; this node gets ALL frames on ``frames`` (the
stream's input) and Track's results of the detected frames on ``tracks`` (``{'tracks': [Track],
'ended': [...]}``, ``partial_id`` = frame index). Frames wait for the next result and go out with
their boxes, moved smoothly between detected frames (:class:`megflow_mp.live.overlay.FrameSync`).
Tracks of the alert ``labels`` are red, others green; each is labelled ``#id label``.
Output: ``{'data': the drawn copy of the frame}``. Args: ``labels`` (["bicycle", "motorbike"]),
``max_pending`` (frames held at most while waiting for results, 90).
"""

from megflow import Envelope, join, register

from megflow_mp.live.overlay import GREEN, RED, Box, FrameSync, draw_boxes


@register(inputs=["frames", "tracks"], outputs=["out"])
class Draw:
    def __init__(self, name, args):
        labels = args.get("labels", ["bicycle", "motorbike"])
        self.labels = {labels} if isinstance(labels, str) else set(labels)
        self.sync = FrameSync(int(args.get("max_pending", 90)))

    def exec(self):
        join([self.take_frames, self.take_tracks])
        self.show(self.sync.flush())

    def take_frames(self):
        while (envelope := self.frames.recv()) is not None:
            self.show(self.sync.add_frame(envelope.partial_id or 0, envelope.msg["data"], envelope.info()))

    def take_tracks(self):
        while (envelope := self.tracks.recv()) is not None:
            boxes = [Box(tuple(t.box), f"#{t.id} {t.detection.label}",
                         RED if t.detection.label in self.labels else GREEN, t.id) for t in envelope.msg["tracks"]]
            self.show(self.sync.add_result(envelope.partial_id or 0, boxes))

    def show(self, ready):
        for _, frame, info, boxes in ready:
            self.out.send(Envelope.pack({"data": draw_boxes(frame, boxes)}, info=info))
