"""Summary: the per-stream node of the cameras benchmark.

Takes a detected frame (``msg['objects']`` from the shared ``Detect`` of plugins/simple_det_classify)
and sends one small JSON object out of the stream's subgraph, ``{"frame": 12, "objects": 2}``: that
is when VideoServer counts the frame's latency (its age since it was decoded). The frame itself
goes no further. Args: none.
"""

from megflow import register


@register(inputs=["inp"], outputs=["out"])
class Summary:
    def __init__(self, name, args):
        pass

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        self.out.send(envelope.repack({"frame": envelope.partial_id, "objects": len(envelope.msg["objects"])}))
