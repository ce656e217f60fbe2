"""DynDemux: one subgraph instance per ``to_addr``.

The first envelope for a new address creates an instance of the subgraph wired to ``out`` (picked
by the envelope's ``tag`` when the node's type is ``"A|B"``; without a tag, the first type) inside the workers of that subgraph's
nodes (no new process). An empty envelope (``msg is None``) to an address closes that instance's
input and waits until it has ended. When ``inp`` ends, every instance is closed and awaited.
An instance whose creation fails is reported; its address's envelopes are dropped.

``cloned = N``: every envelope of one address reaches the same replica (a new address goes to the
replica with the fewest addresses from that sender), which creates the address's instance; on a
cluster the replicas are dealt over the machines and each instance keeps its nodes on its replica's
machine, so the instances spread over the machines.
"""

import logging

from ..nodeargs import NoArgs
from ..registry import register

log = logging.getLogger("megflow_mp")


@register(name="DynDemux", inputs=["inp"], outputs=["out"], args=NoArgs)
class DynDemux:
    dynamic_outputs = ("out",)
    keyed_by = "to_addr"  # replicas: one address, one replica (see the send path's Dest.key)

    def __init__(self, name, args):
        self.name = name
        self.instances = {}  # to_addr -> its Instance handle
        self.failed = set()
        self.worker = self.node = self.dyn = None  # set by bind_runtime before exec

    def bind_runtime(self, worker, node):
        self.worker, self.node = worker, node
        self.dyn = node.spec.dynamic["out"]

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            for addr in list(self.instances):
                self._close(addr, wait=False)
            for addr in list(self.instances):
                self.instances.pop(addr).done.wait()
            return
        addr = envelope.to_addr
        if envelope.msg is None:
            if addr in self.instances:
                self._close(addr, wait=True)
            return
        child = self.instances.get(addr)
        if child is None:
            if addr in self.failed:
                return
            child = self._create(envelope)
            if child is None:
                return
        child.send(envelope)

    def _create(self, envelope):
        types = self.dyn.types
        graph = types[0] if len(types) == 1 or envelope.tag is None else envelope.tag
        addr = envelope.to_addr
        if graph not in types:
            log.error("DynDemux %r: envelope for %r has tag %r, expected one of %s; dropped",
                      self.name, addr, graph, ", ".join(types))
            self.failed.add(addr)
            return None
        try:
            child = self.worker.create_instance(graph, f"{self.dyn.path}#{addr}", self.dyn, self.node)
        except RuntimeError as exc:
            log.error("DynDemux %r: %s", self.name, exc)
            self.failed.add(addr)
            return None
        self.instances[addr] = child
        return child

    def _close(self, addr, wait):
        child = self.instances[addr]
        child.close()
        if wait:
            self.instances.pop(addr)
            child.done.wait()
