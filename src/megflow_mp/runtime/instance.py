"""The creator's handle on a dynamic graph instance (DynDemux's per-address subgraph, a video stream's).

:meth:`Worker.create_instance <megflow_mp.runtime.worker.Worker.create_instance>` plans, installs
and starts the instance and returns an :class:`Instance`; the creator uses only this handle:

* ``send(envelope)`` feeds the instance's entry (the graph input wired to the creator's dynamic
  port), stamped with the instance's route when it enters a shared node; blocks while its channels
  are full; moves the envelope; raises ChannelClosed after ``close()``.
* ``close()`` ends that input (the instance's nodes see the end of stream and finish); idempotent,
  and a no-op once the instance ended.
* ``done``: a Future resolved, with the list of failures, when every node of the instance ended;
  the instance is then destroyed on its hosts.
* ``results(name)``: a receiving port for graph output ``name`` (asked for in ``exits`` at
  creation); ``recv()`` gives ``None`` once every sender of that output ended.
* ``on_failure(failure)``, given at creation: called on the hub for each failure as it is reported
  (a node of the instance raised, or a shared node raised on one of its envelopes).
"""

from __future__ import annotations

from ..errors import ChannelClosed, NodeFailure
from .hub import Future
from .ports import InputPort


class Instance:
    """One graph instance this process created; see the module docstring for the contract."""

    def __init__(self, channels, node, plan, entry_port: str, expected: int, hosts: list, exits: dict,
                 on_failure=None):
        self.channels, self.node, self.plan = channels, node, plan
        self.path = plan.path
        self.entry = plan.entry.get(entry_port, [])
        self.route = next((d.route for d in self.entry if d.shared), None)
        self._send = channels.sender(self.entry, self.route)
        self.expected, self.hosts = expected, hosts
        self.exits = exits  # graph output name -> Inbox in this process
        self.done = Future(channels.hub)
        self.ended: set = set()  # (host, node path) reported ended
        self.failures: list[NodeFailure] = []
        self.on_failure = on_failure
        self.closed = False

    def send(self, envelope) -> None:
        if self.closed:
            raise ChannelClosed(f"the input of {self.path} was closed")
        self._send(envelope)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.done.done:  # an instance that already ended has no input left
                self.channels.close(self.entry)

    def results(self, name: str) -> InputPort:
        """The receiving port of graph output ``name`` (KeyError if it was not asked for)."""
        return InputPort(self.node, self.exits[name], f"{name}#{self.path}")

    # -- reported by the hosts (the worker calls these on the hub) ---------------------------------------
    def failed(self, failure: NodeFailure) -> None:
        self.failures.append(failure)
        if self.on_failure is not None:
            self.on_failure(failure)

    def channel_ids(self) -> set:
        """The channels this process sends on (to forget once the instance ended)."""
        return {d.chan for dests in self.plan.entry.values() for d in dests if not d.shared}
