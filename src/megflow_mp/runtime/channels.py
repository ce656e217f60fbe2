"""Channel state on both sides of a connection, and the record vocabulary.

Records exchanged between processes (tuples, see :mod:`.transport`):
``(DATA, chan, payload)``, ``(CLOSE, chan, route)``, ``(CREDIT, chan, n)``, ``(CTRL, pickled)``.

Flow control is credit based: a sender may have at most ``cap`` unacknowledged messages in one
channel replica (per sending process); the receiver returns credits in batches as the plugin takes
messages (every ``cap/2``), and all that it owes whenever its process is about to wait, so a slow
consumer blocks its producers (backpressure), memory stays bounded, and no window can starve.

End of stream: a channel *closes* when all of its sender endpoints have sent CLOSE (counted). A
shared node's channel never closes before the app ends; instead CLOSE with a route counts down that
route's senders and then queues a :class:`Flush` marker, which ``recv()`` returns as ``None`` once.
"""

from __future__ import annotations

from collections import deque

import greenlet

DATA, CLOSE, CREDIT, CTRL = 0, 1, 2, 3


class Flush:
    """End of one route's stream inside a shared node's channel."""

    __slots__ = ("route",)

    def __init__(self, route: int):
        self.route = route


class Inbox:
    """The receiving end of one channel replica in this process."""

    __slots__ = ("chan", "queue", "senders", "closed", "waiter", "owed", "threshold", "post", "shared",
                 "route_left", "eof_seen", "discard", "hub", "owing")

    def __init__(self, chan: int, cap: int, senders: int, post, hub, shared: bool = False, owing=None):
        self.chan = chan
        self.queue: deque = deque()
        self.senders = senders
        self.closed = senders == 0 and not shared
        self.waiter = None
        self.owed: dict[int, int] = {}
        self.threshold = max(1, cap // 2)
        self.post = post  # sends a CREDIT record to a process (at once: transport.send_now)
        self.hub = hub
        self.shared = shared
        self.route_left: dict[int, int] = {}
        self.eof_seen = self.closed
        self.discard = False
        self.owing = owing if owing is not None else set()  # inboxes with credits not yet returned

    # -- hub side -------------------------------------------------------------------------------------
    def push(self, src: int, item) -> None:
        if self.discard:
            if src >= 0:  # a Flush (src -1) is nobody's message: no credit for it
                self.post(src, (CREDIT, self.chan, 1))
            return
        self.queue.append((src, item))
        if self.waiter is not None:
            self.hub.wake(self.waiter)
            self.waiter = None

    def close_one(self, route) -> None:
        if self.shared and route is not None:
            left = self.route_left.get(route, 0) - 1
            if left > 0:
                self.route_left[route] = left
                return
            self.route_left.pop(route, None)
            self.push(-1, Flush(route))
            return
        self.senders -= 1
        if self.senders <= 0:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.waiter is not None:
            self.hub.wake(self.waiter)
            self.waiter = None

    # -- task side --------------------------------------------------------------------------------------
    def take(self):
        """Pop the next item (an Envelope or a Flush); credit its sender. Queue must be non-empty."""
        src, item = self.queue.popleft()
        if src >= 0:
            owed = self.owed.get(src, 0) + 1
            if owed >= self.threshold:
                self.post(src, (CREDIT, self.chan, owed))
                owed = 0
            else:
                self.owing.add(self)
            self.owed[src] = owed
        return item

    def return_credits(self) -> None:
        """Give back every credit owed (the process is about to wait: nothing may stay held)."""
        for src, owed in self.owed.items():
            if owed:
                self.post(src, (CREDIT, self.chan, owed))
                self.owed[src] = 0

    def wait(self) -> None:
        """Park the current task until an item arrives or the channel closes."""
        self.waiter = greenlet.getcurrent()
        try:
            self.hub.park()
        finally:
            self.waiter = None

    def finished(self) -> bool:
        return self.closed and not self.queue and self.eof_seen

    def drop(self) -> None:
        """The node behind this inbox ended: give back credits for everything left and for what comes."""
        self.discard = True
        while self.queue:
            self.take()
        self.return_credits()


class Credits:
    """Sender-side credit table of one process: ``(proc, chan) -> messages it may still send``."""

    def __init__(self, hub):
        self.hub = hub
        self.avail: dict[tuple[int, int], int] = {}
        self.waiters: dict[int, list] = {}

    def acquire(self, dest) -> int:
        """Pick the replica of ``dest`` with the most credit, blocking the task while none has any."""
        avail, chan = self.avail, dest.chan
        procs = dest.procs
        if len(procs) == 1:  # fast path: one replica
            key = (procs[0], chan)
            n = avail.get(key, dest.cap)
            if n > 0:
                avail[key] = n - 1
                return procs[0]
        while True:
            best, most = -1, 0
            for proc in dest.procs:
                n = avail.get((proc, chan), dest.cap)
                if n > most:
                    best, most = proc, n
            if best >= 0:
                avail[(best, chan)] = most - 1
                return best
            self.waiters.setdefault(chan, []).append(greenlet.getcurrent())
            self.hub.park()

    def reset_peer(self, proc: int) -> None:
        """Process ``proc`` was restarted: every window to it is full again."""
        for key in [k for k in self.avail if k[0] == proc]:
            del self.avail[key]
            for w in self.waiters.pop(key[1], ()):
                self.hub.wake(w)

    def grant(self, proc: int, chan: int, n: int, cap_default: int | None = None) -> None:
        key = (proc, chan)
        if key in self.avail:
            self.avail[key] += n
        else:  # credit for a window never used here: nothing to add to
            return
        waiters = self.waiters.pop(chan, None)
        if waiters:
            for w in waiters:
                self.hub.wake(w)
