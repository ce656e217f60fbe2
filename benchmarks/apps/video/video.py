"""Plugin of the video benchmark.

``CountSink`` is the whole per-stream subgraph: it takes each decoded frame (a shared-memory view,
nothing is copied), checks that frame indexes come in order, counts, and when its stream's input
closes sends ONE JSON string out of the subgraph (VideoServer keeps it for ``/get_msgs``,
VideoInput logs it with ``print_msgs``): ``count``, ``bad`` (out-of-order indexes), ``shape`` and
wall-clock times (``time.time()``, comparable across the processes of one machine): ``t_init``
(the instance was built: right after its stream was opened), ``t_first`` and ``t_last`` (first and
last frame received).
"""

import json
import time

from megflow import Envelope, register


@register(inputs=["inp"], outputs=["out"])
class CountSink:
    def __init__(self, name, args):
        self.t_init = time.time()
        self.count = self.bad = 0
        self.t_first = self.t_last = None
        self.shape = None
        self.sent = False

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            if self.inp.is_closed() and not self.sent:
                self.sent = True
                self.out.send(Envelope.pack(json.dumps({
                    "count": self.count, "bad": self.bad, "shape": self.shape, "t_init": self.t_init,
                    "t_first": self.t_first, "t_last": self.t_last})))
            return
        now = time.time()
        if self.count == 0:
            self.t_first = now
            self.shape = list(envelope.msg["data"].shape)
        if envelope.partial_id != self.count:
            self.bad += 1
        self.count += 1
        self.t_last = now
