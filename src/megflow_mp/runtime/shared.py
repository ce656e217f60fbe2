"""Shared nodes at run time: one node (a top-level ``[[nodes]]`` entry) serving every graph instance.

A graph instance that uses a shared node registers a *route* on it (a :class:`~megflow_mp.plan.RouteSpec`,
planned by :mod:`megflow_mp.plan`): how many of its senders feed each input channel, and where each
output goes for envelopes stamped with that route (``transfer_addr``). The node's inputs never
close before the app ends; the end of one route's stream is a Flush marker per input channel; once
it passed every input the route is *closed*: its output destinations get CLOSE and are forgotten.

A route also *fails*: an exception in ``exec`` charged to one instance's envelopes fails only that
route (its creator is told, its later envelopes are skipped, its outputs closed).
"""

from __future__ import annotations

from ..envelope import Envelope, mark_moved
from .threads import off_hub, run_on_hub


class RoutedOutputPort:
    """An output of a shared node: destinations depend on the envelope's route (its instance)."""

    __slots__ = ("node", "routes", "senders", "name")

    def __init__(self, node, name: str):
        self.node, self.routes, self.name = node, {}, name
        self.senders: dict = {}  # route -> the send path to its destinations (built on first use)

    def send(self, envelope: Envelope) -> None:
        """Deliver to the destinations of ``envelope.transfer_addr``'s instance; an envelope of an
        instance no longer served (it failed here) or unknown is dropped (the latter with an error
        logged once)."""
        if not isinstance(envelope, Envelope):
            raise TypeError(f"send() takes an Envelope, got {type(envelope).__name__}")
        node = self.node
        if node.threaded and off_hub(node.hub):
            return run_on_hub(node.hub, self.send, envelope, cancelled=node.is_cancelled)
        send = self.senders.get(envelope.transfer_addr)
        if send is not None:
            return send(envelope)
        dests = self.routes.get(envelope.transfer_addr)
        if dests is None and envelope.transfer_addr in node.routes.failed:
            mark_moved(envelope)  # that instance got this node's error: nothing more goes to it
            return
        if dests is None:
            node.warn_once(f"shared node {node.path!r} port {self.name!r}: no subgraph instance "
                           f"{envelope.transfer_addr!r} is connected; envelope dropped (use envelope.repack "
                           f"to keep the route of the input)")
            mark_moved(envelope)
            return
        send = self.senders[envelope.transfer_addr] = node.worker.channels.sender(dests)
        send(envelope)

    def set_route(self, route: int, dests: list | None) -> list:
        """Route ``route``'s destinations become ``dests`` (None: it is served no more); returns the old ones."""
        self.senders.pop(route, None)
        old = self.routes.pop(route, [])
        if dests is not None:
            self.routes[route] = dests
        return old


class SharedRoutes:
    """The routes a shared node instance serves (a non-shared node has an empty one)."""

    __slots__ = ("node", "channels", "inputs", "flushed", "pending", "ports", "failed", "creators")

    def __init__(self, node, channels):
        self.node, self.channels = node, channels
        self.inputs: dict[int, set] = {}  # route -> its input channels (each must see its Flush)
        self.flushed: dict[int, set] = {}
        self.pending: list[int] = []  # routes whose end passed every input, closed at the next recv
        self.ports: dict[tuple, RoutedOutputPort] = {}  # (port, tag) -> port
        self.failed: set[int] = set()  # routes this node raised on: their envelopes are skipped
        self.creators: dict[int, int] = {}  # route -> process of the instance's creator

    def port(self, name: str, tag) -> RoutedOutputPort:
        key = (name, tag)
        port = self.ports.get(key)
        if port is None:
            port = self.ports[key] = RoutedOutputPort(self.node, name if tag is None else f"{name}:{tag}")
        return port

    def install(self, r, creator: int) -> None:
        """Serve graph instance ``r.route`` (a RouteSpec), created by process ``creator``."""
        self.creators[r.route] = creator
        need = self.inputs.setdefault(r.route, set())
        for chan, n in r.inputs.items():
            inbox = self.channels.inboxes[chan]
            inbox.route_left[r.route] = inbox.route_left.get(r.route, 0) + n
            need.add(chan)
        for (port, tag), dests in r.outputs.items():
            out = self.ports[(port, tag)]
            out.set_route(r.route, out.routes.get(r.route, []) + list(dests))

    def on_flush(self, route: int, chan: int) -> None:
        got = self.flushed.setdefault(route, set())
        got.add(chan)
        if got >= self.inputs.get(route, set()):
            self.flushed.pop(route, None)
            self.pending.append(route)

    def flush(self) -> None:
        """Close each route whose end passed every input (called at the next recv)."""
        while self.pending:
            route = self.pending.pop(0)
            self.inputs.pop(route, None)
            self.creators.pop(route, None)
            self.failed.discard(route)
            self.close(route)

    def close(self, route: int) -> None:
        """The instance's nodes after this one see the end of ``route``."""
        for port in self.ports.values():
            dests = port.set_route(route, None)
            self.channels.close(dests)
            self.channels.forget({d.chan for d in dests if not d.shared})

    def close_all(self) -> None:
        """The node ended: every route still served sees its end."""
        for port in self.ports.values():
            for dests in port.routes.values():
                self.channels.close(dests)
            port.routes.clear()
            port.senders.clear()

    def can_fail(self, route, supervisor: int) -> bool:
        """True when ``route`` is a dynamic instance (its creator is not the supervisor)."""
        return self.creators.get(route, supervisor) != supervisor

    def fail(self, route: int) -> int | None:
        """Serve ``route`` no more; returns its creator to tell, or None when it failed already."""
        if route in self.failed:
            return None
        self.failed.add(route)
        self.close(route)
        return self.creators[route]
