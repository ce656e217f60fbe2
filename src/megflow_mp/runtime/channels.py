"""Channels: the one home of inboxes, credits, ends of stream and the send path of a process.

Records exchanged between processes (tuples, see :mod:`.transport`):
``(DATA, chan, payload)``, ``(CLOSE, chan, route)``, ``(CREDIT, chan, n)``, ``(CTRL, pickled)``.

Flow control is credit based: a sender may have at most ``cap`` unacknowledged messages in one
channel replica (per sending process); the receiver returns credits in batches as the plugin takes
messages (every ``cap/2``), and all that it owes whenever its process is about to wait, so a slow
consumer blocks its producers (backpressure), memory stays bounded, and no window can starve.

End of stream: a channel *closes* when all of its sender endpoints have sent CLOSE (counted). A
shared node's channel never closes before the app ends; instead CLOSE with a route counts down that
route's senders and then queues a :class:`Flush` marker, which ``recv()`` returns as ``None`` once.

:class:`Channels` is a process's table of them (a worker's, or a program's): it owns the inboxes
hosted here, the sender-side :class:`Credits`, the log of CLOSEs sent (replayed to a restarted
peer), CLOSEs that came before their channel was installed (a restarted process), and the credits
owed; :meth:`Channels.sender` and :meth:`Channels.close` are the only ways records for a channel
leave the process.
"""

from __future__ import annotations

import pickle
import time
from collections import deque
from dataclasses import replace

import greenlet

from ..envelope import Envelope, MovedEnvelope
from ..errors import PeerDied
from ..observe.counters import COUNTS, note_wait

DATA, CLOSE, CREDIT, CTRL = 0, 1, 2, 3


class Flush:
    """End of one route's stream inside a shared node's channel."""

    __slots__ = ("route",)

    def __init__(self, route: int):
        self.route = route


class Inbox:
    """The receiving end of one channel replica in this process.

    Filled on the hub (``push``, ``close_one``), read by the node's task (``take``, ``wait``). The
    items are the senders' decoded envelope tuples; taking one owes its sender a credit, which goes
    back through ``post`` (``post(proc, record)``, sent at once) in batches of ``cap/2``, or all at
    once from ``return_credits`` (the process is about to wait). ``drop`` (its node ended) turns it
    into a sink that credits everything at once.
    """

    __slots__ = ("chan", "queue", "senders", "closed", "waiter", "owed", "threshold", "post", "shared",
                 "route_left", "eof_seen", "discard", "hub", "owing", "closers")

    def __init__(self, chan: int, cap: int, senders: int, post, hub, shared: bool = False, owing=None,
                 procs: tuple = ()):
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
        self.closers: dict[int, int] = {}  # sender process -> its endpoints that have not closed yet
        for proc in procs:
            self.closers[proc] = self.closers.get(proc, 0) + 1

    # -- hub side -------------------------------------------------------------------------------------
    def push(self, src: int, item) -> None:
        """Queue ``item`` from process ``src`` (-1: a Flush) and wake the waiting task."""
        if self.discard:
            if src >= 0:  # a Flush (src -1) is nobody's message: no credit for it
                self.post(src, (CREDIT, self.chan, 1))
            return
        self.queue.append((src, item))
        if self.waiter is not None:
            self.hub.wake(self.waiter)
            self.waiter = None

    def close_one(self, route, src: int = -1) -> None:
        """One sender endpoint (of process ``src``) ended (for ``route``, in a shared node's channel)."""
        if src in self.closers:
            self.closers[src] -= 1
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

    def sender_died(self, proc: int) -> None:
        """Process ``proc`` died for good: its endpoints that had not closed count as closed."""
        for _ in range(self.closers.pop(proc, 0)):
            self.close_one(None, -1)

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
        started = time.perf_counter()
        try:
            self.hub.park()
        finally:
            self.waiter = None
            note_wait(started)  # metrics: exec time leaves waits out

    def finished(self) -> bool:
        return self.closed and not self.queue and self.eof_seen

    def drop(self) -> None:
        """The node behind this inbox ended: give back credits for everything left and for what comes."""
        self.discard = True
        while self.queue:
            self.take()
        self.return_credits()


def not_an_envelope(value) -> TypeError:
    return TypeError(f"send() takes an Envelope, got {type(value).__name__}: wrap it with Envelope.pack(msg)")


class Credits:
    """Sender-side credit table of one process: ``(proc, chan) -> messages it may still send``.

    Tasks that find no credit queue per channel and are served in arrival order: only the oldest
    waiter may take a credit, and it hands the turn to the next one while credit is left, so one
    busy sender (a stream with a full decode queue) cannot take every credit that comes back while
    the others of the same channel starve.

    ``dead`` holds the peers known to have died for good (no restart): sending to a destination
    whose every replica is dead raises :class:`~megflow_mp.errors.PeerDied` instead of waiting.
    ``near`` (on a cluster: the processes of this machine) are preferred while they have credit."""

    NEAR = 1 << 30  # what being on this machine weighs against credit

    def __init__(self, hub):
        self.hub = hub
        self.avail: dict[tuple[int, int], int] = {}
        self.waiters: dict[int, deque] = {}  # chan -> tasks waiting for its credit, oldest first
        self.roused: set = set()  # waiting tasks already woken (a task is never scheduled twice)
        self.dead: set[int] = set()
        self.near: frozenset = frozenset()

    def acquire(self, dest) -> int:
        """Pick the replica of ``dest`` with the most credit (one on this machine first, when any
        has credit), blocking the task while none has any or older waiters of the channel are
        ahead of it. Raises PeerDied when every replica of ``dest`` died."""
        avail, chan = self.avail, dest.chan
        procs = dest.procs
        if len(procs) == 1 and not self.dead and chan not in self.waiters:  # fast path: one replica
            key = (procs[0], chan)
            n = avail.get(key, dest.cap)
            if n > 0:
                avail[key] = n - 1
                return procs[0]
        me = None
        while True:
            queue = self.waiters.get(chan)
            if not queue or queue[0] is me:  # this task's turn
                best = self._pick(dest)
                if best >= 0:
                    avail[(best, chan)] -= 1
                    if me is not None:
                        self._leave(dest, me)
                    return best
                if self.dead and all(p in self.dead for p in procs):
                    if me is not None:
                        self._leave(dest, me)
                    raise PeerDied(f"peer died: every process receiving channel {chan} (worker "
                                   f"{', '.join(map(str, procs))}) is gone")
            if me is None:
                me = greenlet.getcurrent()
                self.waiters.setdefault(chan, deque()).append(me)
            started = time.perf_counter()
            try:
                self.hub.park()
            except BaseException:  # thrown in (the task is stopped): give up the place in the queue
                self._leave(dest, me)
                raise
            finally:
                self.roused.discard(me)
            note_wait(started, credit=True)  # metrics: backpressure

    def _pick(self, dest) -> int:
        """The live replica of ``dest`` to send to (-1: none has credit); its entry in ``avail``
        exists afterwards."""
        avail, chan, dead, near = self.avail, dest.chan, self.dead, self.near
        best, most, top = -1, 0, 0
        for proc in dest.procs:
            if proc in dead:
                continue
            n = avail.get((proc, chan), dest.cap)
            score = n + self.NEAR if n > 0 and proc in near else n
            if score > top:
                best, most, top = proc, n, score
        if best >= 0:
            avail[(best, chan)] = most
        return best

    def _leave(self, dest, task) -> None:
        """``task`` stops waiting on ``dest``'s channel; the next waiter is woken when credit is left."""
        chan, avail, dead = dest.chan, self.avail, self.dead
        queue = self.waiters.get(chan)
        if queue is None:
            return
        try:
            queue.remove(task)
        except ValueError:
            pass
        if not queue:
            del self.waiters[chan]
        elif any(avail.get((p, chan), dest.cap) > 0 for p in dest.procs if p not in dead):
            self._rouse(queue[0])

    def _rouse(self, task) -> None:
        if task not in self.roused:
            self.roused.add(task)
            self.hub.wake(task)

    def _rouse_head(self, chan: int) -> None:
        queue = self.waiters.get(chan)
        if queue:
            self._rouse(queue[0])

    def has(self, dests) -> bool:
        """True when a send to every one of ``dests`` would not wait."""
        avail, waiters = self.avail, self.waiters
        return all(d.chan not in waiters and any(avail.get((p, d.chan), d.cap) > 0 for p in d.procs)
                   for d in dests)

    def reset_peer(self, proc: int) -> None:
        """Process ``proc`` was restarted: every window to it is full again."""
        self.dead.discard(proc)
        for key in [k for k in self.avail if k[0] == proc]:
            del self.avail[key]
            self._rouse_head(key[1])

    def peer_died(self, proc: int) -> None:
        """Process ``proc`` died and will not come back: its waiting senders raise PeerDied."""
        self.dead.add(proc)
        for chan in {k[1] for k in self.avail if k[0] == proc}:
            self._rouse_head(chan)

    def throw_waiters(self, chans, exc: BaseException) -> None:
        """Raise ``exc`` in every task waiting for credit on one of ``chans``."""
        for chan in [c for c in self.waiters if c in chans]:
            for task in self.waiters.pop(chan):
                if task not in self.roused:  # a woken one finds its queue gone and goes on
                    self.roused.add(task)
                    self.hub.throw(task, exc)

    def grant(self, proc: int, chan: int, n: int, cap_default: int | None = None) -> None:
        key = (proc, chan)
        if key in self.avail:
            self.avail[key] += n
        else:  # credit for a window never used here: nothing to add to
            return
        if chan in self.waiters:
            self._rouse_head(chan)


class Channels:
    """The channels of one process: inboxes hosted here and the sending side of every channel.

    Owned by the process's worker (or program host); ``transport`` and ``codec`` are its.
    ``decode`` rebuilds a DATA payload (arrays as views of shared memory). Records are handed in by
    :meth:`on_records` (CTRL ones go to ``on_control(src, msg)``, unpickled)."""

    def __init__(self, hub, transport, codec, decode=None, on_control=None, keep_early_closes: bool = False):
        self.hub, self.transport, self.codec = hub, transport, codec
        self.decode = decode or codec.decode
        self.on_control = on_control
        self.credits = Credits(hub)
        self.inboxes: dict[int, Inbox] = {}
        self.owing: set = set()
        self.closed_log: dict[int, list] = {}  # proc -> CLOSE records sent to it (replayed if it restarts)
        self.early_closes: dict[int, list] = {}  # chan -> routes of CLOSEs that came before the channel
        self.keep_early_closes = keep_early_closes  # a restarted process: peers replay their CLOSEs
        self.retiring: set[int] = set()  # channels of inboxes that leave the table once closed (retire)
        hub.idle_hooks.insert(0, self.return_credits)

    # -- receiving --------------------------------------------------------------------------------------
    def on_records(self, src: int, records) -> None:
        inboxes, decode = self.inboxes, self.decode
        for rec in records:
            op = rec[0]
            if op == DATA:
                inbox = inboxes.get(rec[1])
                item = decode(rec[2])
                if inbox is None:
                    del item  # a late message for an ended node: drop it (its arrays are released)
                    self.transport.post(src, (CREDIT, rec[1], 1))
                else:
                    COUNTS.received += 1  # metrics: envelopes in
                    inbox.push(src, item)
            elif op == CREDIT:
                self.credits.grant(src, rec[1], rec[2])
            elif op == CLOSE:
                inbox = inboxes.get(rec[1])
                if inbox is not None:
                    inbox.close_one(rec[2], src)
                    if inbox.closed and self.retiring and rec[1] in self.retiring:
                        self.retiring.discard(rec[1])
                        del inboxes[rec[1]]
                elif self.keep_early_closes:
                    self.early_closes.setdefault(rec[1], []).append((rec[2], src))
            elif op == CTRL:
                self.on_control(src, pickle.loads(rec[1]))

    def open_inbox(self, chan: int, cap: int, senders: int, shared: bool = False, procs: tuple = ()) -> Inbox:
        """The receiving end of channel ``chan`` here (CLOSEs that came early are applied); ``procs``
        gives the process of each sender endpoint, when known (see :meth:`peer_died`)."""
        # credits go out at once: a sender waiting for them must not wait for our next batch
        inbox = self.inboxes[chan] = Inbox(chan, cap, senders, self.post_now, self.hub, shared, self.owing, procs)
        for route, src in self.early_closes.pop(chan, ()):
            inbox.close_one(route, src)
        return inbox

    def post_now(self, proc: int, record: tuple) -> None:
        self.transport.send_now(proc, record)

    def remove_inbox(self, inbox: Inbox) -> None:
        if self.inboxes.get(inbox.chan) is inbox:
            del self.inboxes[inbox.chan]
        self.retiring.discard(inbox.chan)

    def retire_inbox(self, inbox: Inbox) -> None:
        """``inbox`` leaves the table once every sender closed it: now when they did, else when the
        last CLOSE arrives (nothing can come after it). Whoever reads it (a port holding the inbox)
        still takes what is queued; only records for its channel are no longer routed to it."""
        if inbox.closed:
            self.remove_inbox(inbox)
        elif self.inboxes.get(inbox.chan) is inbox:
            self.retiring.add(inbox.chan)

    def return_credits(self) -> None:
        for inbox in self.owing:
            inbox.return_credits()
        self.owing.clear()

    # -- sending ----------------------------------------------------------------------------------------
    def sender(self, dests, route=None):
        """The send path: a function ``send(envelope)`` delivering to each of ``dests`` (one
        replica each, by credit), stamped with ``route`` when it enters a shared node. Built once
        per set of destinations (an output port, an instance's entry, a program's input), so a
        message costs one call. ``send`` raises TypeError for anything but an Envelope, encodes
        once, moves the envelope, blocks the task while a destination has no credit and raises
        PeerDied when every replica of one died."""
        dests = tuple(dests)
        if any(d.key for d in dests):
            return self._keyed_sender(dests, route)
        copies = len(dests)
        encode, channels, credits = self.codec.encode, self, self.credits
        acquire, avail, waiters = credits.acquire, credits.avail, credits.waiters
        # one destination with one replica (a plain connection): Credits.acquire's fast path inline
        one = dests[0] if copies == 1 and len(dests[0].procs) == 1 else None
        if one is not None:
            proc, chan, cap = one.procs[0], one.chan, one.cap
            key = (proc, chan)

        def send(envelope) -> None:
            if type(envelope) is not Envelope:
                raise not_an_envelope(envelope)
            if route is not None:
                envelope.transfer_addr = route
            payload, segments = encode(envelope.to_tuple(), copies, envelope.msg)
            envelope.__class__ = MovedEnvelope  # moved: what mark_moved does, without its call
            COUNTS.sent += copies  # metrics: envelopes out, one per receiving channel
            if one is not None:
                n = avail.get(key, cap)
                if n > 0 and chan not in waiters and not credits.dead:
                    avail[key] = n - 1
                else:
                    acquire(one)  # waits for credit, or raises PeerDied
                channels.transport.post(proc, (DATA, chan, payload), len(payload), segments)
                return
            size, post = len(payload), channels.transport.post
            for d in dests:
                post(acquire(d), (DATA, d.chan, payload), size, segments)

        return send

    def _keyed_sender(self, dests, route):
        """The send path when some of ``dests`` pick their replica by an envelope attribute
        (``Dest.key``; DynDemux: ``to_addr``): every envelope of one key goes to the same replica,
        and a new key to the live replica with the fewest keys from this sender. An envelope whose
        ``msg`` is None (for DynDemux, the end of its address) lets its key go once sent."""
        singles = [{p: replace(d, procs=(p,), key=None) for p in d.procs} if d.key else None for d in dests]
        owners: list[dict] = [{} for _ in dests]  # per keyed dest: key -> replica
        paths: dict[tuple, object] = {}  # the plain send path of each choice of replicas

        def pick(i: int, d, k) -> int:
            owner = owners[i]
            proc = owner.get(k)
            if proc is None:
                load = {p: 0 for p in d.procs if p not in self.credits.dead} or {p: 0 for p in d.procs}
                for p in owner.values():
                    if p in load:
                        load[p] += 1
                proc = owner[k] = min(load, key=lambda p: (load[p], p))
            return proc

        def send(envelope) -> None:
            if type(envelope) is not Envelope:
                raise not_an_envelope(envelope)
            chosen = tuple(d if singles[i] is None else singles[i][pick(i, d, getattr(envelope, d.key))]
                           for i, d in enumerate(dests))
            path = paths.get(chosen)
            if path is None:
                path = paths[chosen] = self.sender(chosen, route)
            keys = [(i, getattr(envelope, d.key)) for i, d in enumerate(dests) if d.key] if envelope.msg is None else ()
            path(envelope)
            for i, k in keys:
                owners[i].pop(k, None)

        return send

    def close(self, dests) -> None:
        """Send CLOSE (for each destination's route) to every replica of each of ``dests``; logged,
        to be replayed to a peer that restarts."""
        post, log_ = self.transport.post, self.closed_log
        for d in dests:
            for proc in d.procs:
                post(proc, (CLOSE, d.chan, d.route))
                log_.setdefault(proc, []).append((d.chan, d.route))

    def forget(self, chans: set) -> None:
        """Channels of an ended instance: drop their credit windows and logged ends (no leak per
        instance in a long-running app)."""
        if not chans:
            return
        avail = self.credits.avail
        for key in [k for k in avail if k[1] in chans]:
            del avail[key]
        for entries in self.closed_log.values():
            entries[:] = [e for e in entries if e[0] not in chans]

    # -- peers ------------------------------------------------------------------------------------------
    def peer_restarted(self, proc: int) -> None:
        """Worker ``proc`` died and was started again: reset the link and replay the ends sent to it."""
        self.transport.reset_peer(proc)
        self.credits.reset_peer(proc)
        for chan, route in self.closed_log.get(proc, []):
            self.transport.post(proc, (CLOSE, chan, route))

    def peer_died(self, proc: int) -> None:
        """Worker ``proc`` died for good: senders waiting on it raise PeerDied, and the channels it
        sent on here count its ends as closed (its receivers are not left waiting for them)."""
        self.credits.peer_died(proc)
        for inbox in list(self.inboxes.values()):
            if proc in inbox.closers:
                inbox.sender_died(proc)
                if inbox.closed and inbox.chan in self.retiring:
                    self.remove_inbox(inbox)

    def close_hub(self) -> None:
        """Stop returning credits from the hub's idle hook (the hub goes on serving others)."""
        if self.return_credits in self.hub.idle_hooks:
            self.hub.idle_hooks.remove(self.return_credits)
