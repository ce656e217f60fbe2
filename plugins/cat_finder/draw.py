"""Draw: every frame of a stream with its cats boxed and named, for a Visualize node (the live view).

Inputs: ``frames`` (every frame of the stream), ``tracks`` (Track's messages with ``every_frame =
true``: one per sampled frame, ``partial_id`` = frame index, ``seen`` = ``[{'id', 'box', 'score'}]``)
and ``names`` (Lookup's ``{'track', 'name', 'similarity'}``). Frames wait for the next tracked frame
and go out with their boxes, moved smoothly in between
(:class:`megflow_mp.live.overlay.FrameSync`). A registered cat is boxed in green with its name and
similarity, a cat not (yet) recognised in yellow with its track id.
Output: ``{'data': the drawn copy of the frame}``. Args: ``max_pending`` (90 frames).
"""

from megflow import Envelope, join, register

from megflow_mp.live.overlay import GREEN, YELLOW, Box, FrameSync, draw_boxes


@register(inputs=["frames", "tracks", "names"], outputs=["out"])
class Draw:
    def __init__(self, name, args):
        self.sync = FrameSync(int(args.get("max_pending", 90)))
        self.known: dict[int, tuple[str, float]] = {}  # track id -> (name, similarity) of its latest lookup

    def exec(self):
        join([self.take_frames, self.take_tracks, self.take_names])
        self.show(self.sync.flush())

    def take_frames(self):
        while (envelope := self.frames.recv()) is not None:
            self.show(self.sync.add_frame(envelope.partial_id or 0, envelope.msg["data"], envelope.info()))

    def take_names(self):
        while (envelope := self.names.recv()) is not None:
            msg = envelope.msg
            if msg["name"] is not None:
                self.known[msg["track"]] = (msg["name"], msg["similarity"])

    def take_tracks(self):
        while (envelope := self.tracks.recv()) is not None:
            msg = envelope.msg
            for ended in msg["ended"]:
                self.known.pop(ended["id"], None)
            self.show(self.sync.add_result(envelope.partial_id or 0, [self.box(seen) for seen in msg["seen"]]))

    def box(self, seen: dict) -> Box:
        known = self.known.get(seen["id"])
        if known is None:
            return Box(tuple(seen["box"]), f"cat #{seen['id']}", YELLOW, seen["id"])
        return Box(tuple(seen["box"]), f"{known[0]} {known[1]:.2f}", GREEN, seen["id"])

    def show(self, ready):
        for _, frame, info, boxes in ready:
            self.out.send(Envelope.pack({"data": draw_boxes(frame, boxes)}, info=info))
