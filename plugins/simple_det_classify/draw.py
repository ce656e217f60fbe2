"""Draw: each frame with its objects boxed and labelled, for a Visualize node (the live view).

Input ``msg``: Classify's ``{'data': frame, 'objects': [{'box', 'label', 'score', 'classes'}]}``.
Output: ``{'data': a copy of the frame with every box, its detector label and its best class}`` with
the envelope's stream and frame index. Args: none.
"""

from megflow import register

from megflow_mp.live.overlay import GREEN, Box, draw_boxes


def label(obj: dict) -> str:
    top = obj.get("classes") or []
    best = f": {top[0]['label']}" if top else ""
    return f"{obj['label']} {obj['score']:.2f}{best}"


@register(inputs=["inp"], outputs=["out"])
class Draw:
    def __init__(self, name, args):
        pass

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        boxes = [Box(tuple(obj["box"]), label(obj), GREEN) for obj in msg["objects"]]
        self.out.send(envelope.repack({"data": draw_boxes(msg["data"], boxes)}))
