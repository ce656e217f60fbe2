"""The node side of every sink: take an envelope, hand its message to the outlet, pass it on.

``exec`` receives from ``inp``, gives ``(envelope.from_addr, envelope.msg)`` to the node's outlet
(:mod:`.outlet`: spooled, then delivered by its thread) and sends the same envelope on through
``out``, so a sink may sit in the middle of a chain (the last node of a stream's subgraph, whose
output is the stream's messages); with ``out`` unconnected the envelope ends there. An empty
envelope (DynDemux's end of an address) is passed on, not delivered. When ``inp`` has ended, the
node lets go of the outlet; the last instance's release drains and closes it.
"""

from __future__ import annotations

from pathlib import Path

from ..runtime.worker import current_worker
from .config import Args, common_args, default_spool_dir
from .contract import stream_of
from .outlet import open_outlet


class SinkNode:
    KIND = ""
    DESTINATION = None  # class(args: Args, common: Common, node_id: str) -> Destination
    BATCH, LINGER_MS = 1, 0.0

    def __init__(self, name, args):
        self.name = name
        a = Args(self.KIND, name, args)
        self.common = common_args(a, self.BATCH, self.LINGER_MS)
        worker = current_worker()
        decl, replica, app_file = name, 0, None
        if worker is not None:
            decl, replica = worker.app.procs[worker.index]
            app_file = getattr(worker.app, "file", None)
        self.node_id = name if not replica else f"{name}#{replica}"
        self.destination = self.DESTINATION(a, self.common, self.node_id)  # checks every argument now
        if self.common.spool_dir is None:
            self.dir = default_spool_dir(app_file, f"{decl}.{replica}" if replica else decl)
        else:  # the node's own directory; a replica other than 0 uses a subdirectory of it
            self.dir = Path(self.common.spool_dir).expanduser() / (f"replica-{replica}" if replica else "")
        self.outlet = None

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            if self.inp.is_closed() and self.outlet is not None:
                outlet, self.outlet = self.outlet, None
                outlet.release()
            return
        if not envelope.is_empty():
            if self.outlet is None:
                self.outlet = open_outlet(self.KIND, self.name, self.node_id, self.dir, lambda: self.destination,
                                          self.common)
            self.outlet.put(stream_of(envelope.from_addr), envelope.msg)
        self.out.send(envelope)
