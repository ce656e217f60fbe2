"""The port objects a plugin sees as ``self.<port>``: ``recv``/``batch_recv`` and ``send``.

A plugin never sees channels, credits, slots or sockets: inputs give Envelopes (arrays inside are
shared-memory views), outputs take Envelopes. ``send`` moves the envelope (later use raises).
"""

from __future__ import annotations

import logging
import time

import greenlet

from ..envelope import Envelope, mark_moved
from .channels import CLOSE, DATA, Flush
from .threads import off_hub, run_on_hub

log = logging.getLogger("megflow_mp")


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
    """One output of a node instance, delivering to a fixed list of destinations (broadcast)."""

    __slots__ = ("node", "dests", "name", "stamp", "encode", "acquire", "post", "copies")

    def __init__(self, node, dests: list, name: str):
        self.node, self.dests, self.name = node, list(dests), name
        routes = {d.route for d in self.dests if d.shared}
        if len(routes) > 1:
            raise ValueError(f"port {name!r} of {node.path!r} feeds shared nodes of several graph instances")
        self.stamp = routes.pop() if routes else None
        worker = node.worker
        self.encode, self.acquire, self.post = worker.codec.encode, worker.credits.acquire, worker.transport.post
        self.copies = len(self.dests)

    def send(self, envelope: Envelope) -> None:
        """Deliver ``envelope`` to every connected receiver (one replica each); blocks while the
        receivers' channels are full. The envelope is moved: using it afterwards raises."""
        if type(envelope) is not Envelope:
            raise TypeError(f"send() takes an Envelope, got {type(envelope).__name__}: wrap it with Envelope.pack(msg)")
        node = self.node
        if node.threaded and off_hub(node.hub):
            return run_on_hub(node.hub, self.send, envelope, cancelled=node.is_cancelled)
        if self.stamp is not None:  # entering a shared node: the route brings results back here
            envelope.transfer_addr = self.stamp
        payload, segments = self.encode(envelope.to_tuple(), self.copies, envelope.msg)
        mark_moved(envelope)
        size, acquire, post = len(payload), self.acquire, self.post
        for d in self.dests:
            post(acquire(d), (DATA, d.chan, payload), size, segments)

    def close_targets(self):
        return [(d, d.route) for d in self.dests]

    def close(self) -> None:
        """End this output now (receivers see the end of stream); later sends are an error."""
        close_dests(self.node.worker, self.close_targets())
        self.dests, self.copies = [], 0


class RoutedOutputPort:
    """An output of a shared node: destinations depend on the envelope's route (its instance)."""

    __slots__ = ("node", "routes", "name")

    def __init__(self, node, name: str):
        self.node, self.routes, self.name = node, {}, name

    def send(self, envelope: Envelope) -> None:
        if not isinstance(envelope, Envelope):
            raise TypeError(f"send() takes an Envelope, got {type(envelope).__name__}")
        node = self.node
        if node.threaded and off_hub(node.hub):
            return run_on_hub(node.hub, self.send, envelope, cancelled=node.is_cancelled)
        dests = self.routes.get(envelope.transfer_addr)
        if dests is None and envelope.transfer_addr in node.failed_routes:
            mark_moved(envelope)  # that instance got this node's error: nothing more goes to it
            return
        if dests is None:
            self.node.warn_once(f"shared node {self.node.path!r} port {self.name!r}: no subgraph instance "
                                f"{envelope.transfer_addr!r} is connected; envelope dropped (use envelope.repack "
                                f"to keep the route of the input)")
            mark_moved(envelope)
            return
        self.node.deliver(dests, envelope)


def deliver(worker, dests: list, envelope: Envelope) -> None:
    """Encode once, then post one DATA record per destination (one replica each, by credit)."""
    payload, segments = worker.codec.encode(envelope.to_tuple(), len(dests), envelope.msg)
    mark_moved(envelope)
    size = len(payload)
    credits, post = worker.credits, worker.transport.post
    for d in dests:
        proc = credits.acquire(d)
        post(proc, (DATA, d.chan, payload), size, segments)


def close_dests(worker, dests_routes) -> None:
    """Send CLOSE to every replica of each destination (logged, to be replayed to a restarted peer)."""
    post, log_ = worker.transport.post, worker.closed_log
    for d, route in dests_routes:
        for proc in d.procs:
            post(proc, (CLOSE, d.chan, route))
            log_.setdefault(proc, []).append((d.chan, route))
