"""Nodes of the cluster tests: frames with known content, a relay that stamps where it runs, a sink
that checks every frame and writes a JSON report.

``FrameSource`` sends ``n`` frames of ``height`` x ``width`` x 3, frame ``i`` filled with ``i % 251``
and its index in ``msg["i"]``, one every ``interval`` seconds (default: as fast as it can). ``Stamp`` appends ``{"node": <Ray node id of its machine>, "pid",
"ppid"}`` to ``msg["path"]`` and passes the frame on. ``FrameCheck`` checks each frame's content
against its index and writes ``{"count", "bad", "order", "paths"}`` (the distinct stamp paths, by
node id and pid) to ``report`` when its input closes. ``Tally`` (a per-stream node behind a
VideoServer) answers each frame with a JSON string naming the machine it ran on. ``AddrSource``
sends ``n`` small messages to addresses ``0 .. addrs-1`` in turn (``to_addr``), then ends each
address; ``AddrTally`` (a node of a DynDemux's per-address subgraph) writes
``{"addr", "count", "node"}`` to ``<report>/<addr>.json`` when its instance ends.
"""

import json
import os
import time

import numpy as np

from megflow import Envelope, register


@register(outputs=["out"])
class FrameSource:
    def __init__(self, name, args):
        self.n, self.h, self.w = args["n"], args.get("height", 1080), args.get("width", 1920)
        self.interval = args.get("interval", 0)

    def exec(self):
        for i in range(self.n):
            if self.interval:
                time.sleep(self.interval)
            frame = np.full((self.h, self.w, 3), i % 251, np.uint8)
            self.out.send(Envelope.pack({"data": frame, "i": i, "path": []}, info={"partial_id": i}))


@register(inputs=["inp"], outputs=["out"])
class Stamp:
    def __init__(self, name, args):
        self.name = name

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        envelope.msg["path"].append({"name": self.name, "node": os.environ.get("MEGFLOW_MP_RAY_NODE"),
                                     "pid": os.getpid(), "ppid": os.getppid()})
        self.out.send(envelope)


@register(inputs=["inp"])
class FrameCheck:
    def __init__(self, name, args):
        self.report = args["report"]
        self.count = self.bad = 0
        self.order = []
        self.paths = set()

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            if self.inp.is_closed():
                self.finish()
            return
        msg = envelope.msg
        frame, i = msg["data"], msg["i"]
        if frame.shape[2] != 3 or not (frame[:: 61, :: 67] == i % 251).all():
            self.bad += 1
        self.count += 1
        self.order.append(i)
        self.paths.add(json.dumps(msg["path"], sort_keys=True))

    def finish(self):
        with open(self.report, "w") as f:
            json.dump({"count": self.count, "bad": self.bad, "order": self.order,
                       "paths": [json.loads(p) for p in sorted(self.paths)]}, f)


@register(inputs=["inp"], outputs=["out"])
class Tally:
    """A per-stream node: one JSON string per frame, ``{"frame": partial_id, "node": <Ray node id>}``."""

    def __init__(self, name, args):
        self.node = os.environ.get("MEGFLOW_MP_RAY_NODE")

    def exec(self):
        envelope = self.inp.recv()
        if envelope is not None:
            self.out.send(envelope.repack(json.dumps({"frame": envelope.partial_id, "node": self.node})))


@register(outputs=["out"])
class AddrSource:
    def __init__(self, name, args):
        self.n, self.addrs = args["n"], args["addrs"]

    def exec(self):
        for i in range(self.n):
            envelope = Envelope.pack({"i": i})
            envelope.to_addr = i % self.addrs
            self.out.send(envelope)
        for addr in range(self.addrs):
            envelope = Envelope.pack(None)
            envelope.to_addr = addr
            self.out.send(envelope)


@register(inputs=["inp"])
class AddrTally:
    def __init__(self, name, args):
        self.report, self.addr, self.count = args["report"], None, 0

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            if self.addr is not None:
                with open(os.path.join(self.report, f"{self.addr}.json"), "w") as f:
                    json.dump({"addr": self.addr, "count": self.count,
                               "node": os.environ.get("MEGFLOW_MP_RAY_NODE")}, f)
            return
        self.addr = envelope.to_addr
        self.count += 1
