"""The port objects a plugin sees as ``self.<port>``: ``recv``/``batch_recv`` and ``send``.

A plugin never sees channels, credits, slots or sockets: inputs give Envelopes (arrays inside are
shared-memory views), outputs take Envelopes. ``send`` moves the envelope (later use raises).
"""

from __future__ import annotations

import time

import greenlet

from ..envelope import Envelope
from ..errors import ChannelClosed
from .channels import Flush
from .threads import off_hub, run_on_hub


class InputPort:
    """One input channel of a node instance."""

    __slots__ = ("node", "inbox", "name")

    def __init__(self, node, inbox, name: str):
        self.node, self.inbox, self.name = node, inbox, name

    def _next(self, block: bool = True):
        """The next envelope; None at end of stream or at a flush marker; ``...`` if empty and not blocking."""
        inbox = self.inbox
        while True:
            if inbox.queue:
                item = inbox.take()
                if type(item) is Flush:
                    self.node.on_flush(item.route, inbox.chan)
                    return None
                node = self.node
                if node.failed_routes and item[6] in node.failed_routes:
                    continue  # the rest of a subgraph instance whose envelope this shared node failed on
                node.took.append((item[1], item[6], item[7]))
                return Envelope.from_tuple(item)
            if inbox.closed:
                inbox.eof_seen = True
                return None
            if not block:
                return ...
            if self.node.pending_closes:
                self.node.flush_barriers()
            inbox.wait()

    def recv(self) -> Envelope | None:
        """Block until an envelope arrives; ``None`` when the stream ended (or, in a shared node, when
        one subgraph instance's stream ended)."""
        node = self.node
        if node.threaded and off_hub(node.hub):
            return run_on_hub(node.hub, self.recv, cancelled=node.is_cancelled)
        if node.pending_closes:
            node.flush_barriers()
        queue = self.inbox.queue
        if queue and type(queue[0][1]) is tuple and not node.failed_routes:  # fast path: a message is waiting
            item = self.inbox.take()
            node.took.append((item[1], item[6], item[7]))
            return Envelope(*item)
        return self._next()

    def batch_recv(self, n: int, timeout_ms: float | int) -> tuple[list, bool]:
        """Up to ``n`` envelopes, waiting at most ``timeout_ms`` after the first for more.

        Returns ``(envelopes, closed)``; ``closed`` is True when the channel ended. A flush marker
        ends the batch early.
        """
        if self.node.threaded and off_hub(self.node.hub):
            return run_on_hub(self.node.hub, self.batch_recv, n, timeout_ms, cancelled=self.node.is_cancelled)
        self.node.flush_barriers()
        first = self._next()
        if first is None:
            return [], self.inbox.closed and not self.inbox.queue
        out = [first]
        hub = self.node.hub
        deadline = time.monotonic() + max(0.0, timeout_ms) / 1000.0
        inbox = self.inbox
        while len(out) < n:
            if not inbox.queue and not inbox.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                task = greenlet.getcurrent()
                timer = hub.call_later(left, _wake_waiter, inbox, task)
                inbox.wait()
                timer.cancel()
                continue
            if inbox.queue and type(inbox.queue[0][1]) is Flush:
                break
            env = self._next(block=False)
            if env is None or env is ...:
                break
            out.append(env)
        return out, inbox.closed and not inbox.queue

    def is_closed(self) -> bool:
        return self.inbox.closed and not self.inbox.queue


def _wake_waiter(inbox, task) -> None:
    if inbox.waiter is task:
        inbox.waiter = None
        inbox.hub.wake(task)


class OutputPort:
    """One output of a node instance, delivering to a fixed list of destinations (broadcast).

    ``send(envelope)`` delivers to every connected receiver (one replica each) and blocks while
    the receivers' channels are full; the envelope is moved (using it afterwards raises). It is
    the channels' send path itself (:meth:`Channels.sender`), called from an ``exclusive`` node's
    thread through the hub. It raises TypeError for anything but an Envelope, ChannelClosed after
    :meth:`close`, PeerDied when every replica of a receiver died. Closed by :meth:`close` or when
    its node ends (the node does it)."""

    __slots__ = ("node", "dests", "name", "stamp", "send", "closed")

    def __init__(self, node, dests: list, name: str):
        self.node, self.dests, self.name = node, list(dests), name
        routes = {d.route for d in self.dests if d.shared}
        if len(routes) > 1:
            raise ValueError(f"port {name!r} of {node.path!r} feeds shared nodes of several graph instances")
        self.stamp = routes.pop() if routes else None  # entering a shared node: the route brings results back
        deliver = node.worker.channels.sender(self.dests, self.stamp)
        self.send = _via_hub(node, deliver) if node.threaded else deliver
        self.closed = False

    def _refuse(self, envelope) -> None:
        raise ChannelClosed(f"port {self.name!r} of {self.node.path!r} was closed: nothing more can be sent on it")

    def close(self) -> None:
        """End this output now (receivers see the end of stream); later sends raise ChannelClosed."""
        if not self.closed:
            self.closed = True
            self.send = self._refuse
            self.node.worker.channels.close(self.dests)


def _via_hub(node, deliver):
    """``deliver`` for an ``exclusive`` node: called from its thread, it runs on the hub."""
    def send(envelope) -> None:
        if off_hub(node.hub):
            return run_on_hub(node.hub, deliver, envelope, cancelled=node.is_cancelled)
        return deliver(envelope)

    return send
