"""Channel state: Inbox (queue, credit return, close counting, shared routes, discard) and Credits.

Every test runs on a real Hub; ``post`` is a fake transport that records ``(proc, record)``.
"""

from __future__ import annotations

import pytest

from megflow_mp.errors import PeerDied
from megflow_mp.plan import Dest
from megflow_mp.runtime.channels import CREDIT, Credits, Flush, Inbox
from megflow_mp.runtime.hub import Hub
from tests.support.isolation import run_tasks

CHAN = 42


@pytest.fixture
def hub():
    h = Hub()
    yield h
    h.close()


class Posted(list):
    """A fake ``transport.post``: records every ``(proc, record)``."""

    def __call__(self, proc, record, size=64, segments=()):
        self.append((proc, record))


@pytest.fixture
def posted():
    return Posted()


def inbox(hub, posted, cap=4, senders=1, shared=False, owing=None) -> Inbox:
    return Inbox(CHAN, cap, senders, posted, hub, shared, owing)


run = run_tasks


# --- Inbox: queue and credits ------------------------------------------------------------------------------


def test_take_returns_items_in_arrival_order(hub, posted):
    box = inbox(hub, posted, cap=100)
    for i in range(3):
        box.push(7, ("msg", i))
    assert [box.take() for _ in range(3)] == [("msg", 0), ("msg", 1), ("msg", 2)]
    assert not box.queue


def test_credit_goes_back_after_half_the_cap_is_taken(hub, posted):
    box = inbox(hub, posted, cap=4)  # threshold 2
    for i in range(5):
        box.push(7, i)
    box.take()
    assert posted == []  # one taken: owed, not yet returned
    box.take()
    assert posted == [(7, (CREDIT, CHAN, 2))]
    box.take()
    box.take()
    assert posted == [(7, (CREDIT, CHAN, 2))] * 2
    box.take()
    assert box.owed == {7: 1}


def test_credits_are_counted_per_sender(hub, posted):
    box = inbox(hub, posted, cap=4)
    for src in (1, 2, 1, 2):
        box.push(src, src)
    for _ in range(3):
        box.take()
    assert posted == [(1, (CREDIT, CHAN, 2))]
    assert box.owed == {1: 0, 2: 1}


def test_cap_one_returns_every_credit_at_once(hub, posted):
    box = inbox(hub, posted, cap=1)  # threshold max(1, 0) = 1
    box.push(3, "a")
    box.take()
    assert posted == [(3, (CREDIT, CHAN, 1))]


def test_owed_credits_register_the_inbox_as_owing(hub, posted):
    owing = set()
    box = inbox(hub, posted, cap=10, owing=owing)
    box.push(3, "a")
    assert owing == set()
    box.take()
    assert owing == {box}


def test_return_credits_gives_back_everything_owed(hub, posted):
    box = inbox(hub, posted, cap=10)
    for src in (1, 1, 1, 2):
        box.push(src, "x")
    for _ in range(4):
        box.take()
    assert posted == []
    box.return_credits()
    assert sorted(posted) == [(1, (CREDIT, CHAN, 3)), (2, (CREDIT, CHAN, 1))]
    posted.clear()
    box.return_credits()  # nothing owed any more
    assert posted == []


def test_push_wakes_the_waiting_task(hub, posted):
    box = inbox(hub, posted)
    got = []

    def reader():
        while not box.queue:
            box.wait()
        got.append(box.take())

    def writer():
        assert box.waiter is not None  # the reader parked first
        box.push(1, "hello")

    run(hub, reader, writer)
    assert got == ["hello"]
    assert box.waiter is None


# --- Inbox: end of stream ----------------------------------------------------------------------------------


def test_closes_when_every_sender_closed(hub, posted):
    box = inbox(hub, posted, senders=3)
    box.close_one(None)
    box.close_one(None)
    assert not box.closed
    box.close_one(None)
    assert box.closed


def test_no_senders_is_closed_from_the_start(hub, posted):
    box = inbox(hub, posted, senders=0)
    assert box.closed and box.eof_seen and box.finished()


def test_close_wakes_the_waiting_task(hub, posted):
    box = inbox(hub, posted, senders=1)
    seen = []

    def reader():
        box.wait()
        seen.append(box.closed)

    run(hub, reader, lambda: box.close_one(None))
    assert seen == [True]


def test_finished_needs_closed_empty_and_end_seen(hub, posted):
    box = inbox(hub, posted, senders=1)
    box.push(1, "last")
    box.close_one(None)
    assert box.closed and not box.finished()  # an item is still queued
    box.take()
    assert not box.finished()  # the plugin has not seen the end yet
    box.eof_seen = True
    assert box.finished()


def test_items_queued_before_the_close_are_still_taken(hub, posted):
    box = inbox(hub, posted, senders=1)
    box.push(1, "a")
    box.close_one(None)
    assert box.take() == "a"


# --- Inbox: shared node routes ------------------------------------------------------------------------------


def test_a_dead_senders_open_ends_count_as_closed(hub, posted):
    box = Inbox(CHAN, 4, 3, posted, hub, procs=(1, 1, 2))
    box.close_one(None, 1)  # one of process 1's two ends closed before it died
    box.sender_died(1)
    assert not box.closed and box.senders == 1
    box.sender_died(1)  # told twice: nothing more
    assert box.senders == 1
    box.sender_died(2)
    assert box.closed


def test_shared_inbox_never_closes_by_itself(hub, posted):
    box = inbox(hub, posted, senders=0, shared=True)
    assert not box.closed and not box.eof_seen
    box.close()  # what close_shared does at the end of the app
    assert box.closed


def test_route_countdown_queues_one_flush(hub, posted):
    box = inbox(hub, posted, senders=0, shared=True)
    box.route_left[5] = 2
    box.push(9, "data")
    box.close_one(5)
    assert len(box.queue) == 1 and box.route_left == {5: 1}
    box.close_one(5)
    assert 5 not in box.route_left
    assert box.take() == "data"
    flush = box.take()
    assert type(flush) is Flush and flush.route == 5
    assert not box.closed  # only the route ended


def test_routes_count_down_independently(hub, posted):
    box = inbox(hub, posted, senders=0, shared=True)
    box.route_left.update({1: 1, 2: 2})
    box.close_one(2)
    box.close_one(1)
    assert [item.route for _, item in box.queue] == [1]
    box.close_one(2)
    assert [item.route for _, item in box.queue] == [1, 2]


def test_flush_is_not_credited(hub, posted):
    box = inbox(hub, posted, cap=1, senders=0, shared=True)
    box.route_left[5] = 1
    box.close_one(5)
    assert type(box.take()) is Flush
    box.return_credits()
    assert posted == []


def test_flush_wakes_the_waiting_task(hub, posted):
    box = inbox(hub, posted, senders=0, shared=True)
    box.route_left[5] = 1
    got = []

    def reader():
        box.wait()
        got.append(box.take())

    run(hub, reader, lambda: box.close_one(5))
    assert [type(g) for g in got] == [Flush]


def test_shared_inbox_close_without_route_counts_senders(hub, posted):
    box = inbox(hub, posted, senders=2, shared=True)
    box.close_one(None)
    assert not box.closed
    box.close_one(None)
    assert box.closed and not box.queue


# --- Inbox: discard mode --------------------------------------------------------------------------------


def test_drop_credits_everything_queued_and_owed(hub, posted):
    box = inbox(hub, posted, cap=10)
    for src in (1, 2, 2):
        box.push(src, "x")
    box.take()  # owed to 1, not yet returned
    box.drop()
    assert box.discard and not box.queue
    assert sorted(posted) == [(1, (CREDIT, CHAN, 1)), (2, (CREDIT, CHAN, 2))]


def test_discarding_inbox_credits_late_messages_at_once(hub, posted):
    box = inbox(hub, posted, cap=10)
    box.drop()
    box.push(3, "late")
    box.push(3, "later")
    assert not box.queue
    assert posted == [(3, (CREDIT, CHAN, 1)), (3, (CREDIT, CHAN, 1))]


def test_discarding_shared_inbox_sends_no_credit_for_a_route_end(hub, posted):
    box = inbox(hub, posted, senders=0, shared=True)
    box.route_left[5] = 1
    box.drop()  # the shared node ended (its plugin failed)
    box.close_one(5)  # another graph instance closes its route afterwards
    assert posted == []  # a Flush is no message: nobody holds a credit for it


# --- Credits -------------------------------------------------------------------------------------------------


def dest(procs, cap=2, chan=CHAN) -> Dest:
    return Dest(chan, tuple(procs), False, cap)


def test_single_replica_window_is_cap(hub):
    credits = Credits(hub)
    d = dest([4], cap=3)
    got = []
    run(hub, lambda: got.extend(credits.acquire(d) for _ in range(3)))
    assert got == [4, 4, 4]
    assert credits.avail == {(4, CHAN): 0}


def test_acquire_spreads_over_replicas_by_most_credit(hub):
    credits = Credits(hub)
    d = dest([1, 2, 3], cap=2)
    got = []
    run(hub, lambda: got.extend(credits.acquire(d) for _ in range(6)))
    assert got == [1, 2, 3, 1, 2, 3]
    assert all(credits.avail[(p, CHAN)] == 0 for p in (1, 2, 3))


def test_acquire_prefers_the_replica_with_most_credit(hub):
    credits = Credits(hub)
    credits.avail.update({(1, CHAN): 1, (2, CHAN): 5, (3, CHAN): 2})
    got = []
    run(hub, lambda: got.append(credits.acquire(dest([1, 2, 3], cap=8))))
    assert got == [2]
    assert credits.avail[(2, CHAN)] == 4


def test_windows_are_per_channel(hub):
    credits = Credits(hub)
    got = []
    run(hub, lambda: got.extend([credits.acquire(dest([1], cap=1, chan=1)), credits.acquire(dest([1], cap=1, chan=2))]))
    assert got == [1, 1]
    assert credits.avail == {(1, 1): 0, (1, 2): 0}


def test_acquire_blocks_until_grant(hub):
    credits = Credits(hub)
    d = dest([1, 2], cap=1)
    log = []

    def sender():
        log.append(credits.acquire(d))
        log.append(credits.acquire(d))
        log.append(credits.acquire(d))  # both windows full: parks
        log.append("sent")

    def receiver():
        assert log == [1, 2] and credits.waiters[CHAN]  # the sender is parked
        log.append("grant")
        credits.grant(2, CHAN, 1)

    run(hub, sender, receiver)
    assert log == [1, 2, "grant", 2, "sent"]
    assert CHAN not in credits.waiters


def starved(hub, cap: int):
    """Credits whose window to replica 1 of CHAN (a Dest of ``cap``) is used up."""
    credits = Credits(hub)
    credits.avail[(1, CHAN)] = 0
    return credits, dest([1], cap=cap)


def sending(credits, d, got: list, name: str, times: int = 1):
    """A task body: acquire a credit of ``d`` ``times`` times, noting ``name`` in ``got`` each time."""
    def body():
        for _ in range(times):
            credits.acquire(d)
            got.append(name)
    return body


def test_grant_wakes_every_waiter_of_the_channel(hub):
    credits, d = starved(hub, cap=1)
    got = []

    def granter():
        assert len(credits.waiters[CHAN]) == 2
        credits.grant(1, CHAN, 2)

    run(hub, sending(credits, d, got, "a"), sending(credits, d, got, "b"), granter)
    assert sorted(got) == ["a", "b"]


def parked(hub, credits, n: int) -> None:
    """Yield (from a task) until ``n`` tasks wait for credit on CHAN; fails instead of spinning."""
    for _ in range(1000):
        if len(credits.waiters.get(CHAN, ())) >= n:
            return
        hub.yield_now()
    raise AssertionError(f"{n} senders never waited together: {credits.waiters}")


def test_waiters_take_turns_however_busy_one_of_them_is(hub):
    """Two senders with plenty to send share a window that comes back two credits at a time:
    each grant serves both in turn, never the one that happens to run first twice."""
    credits, d = starved(hub, cap=2)
    got = []

    def granter():
        for _ in range(6):
            parked(hub, credits, 2)  # both wait again
            credits.grant(1, CHAN, 2)

    run(hub, sending(credits, d, got, "a", 6), sending(credits, d, got, "b", 6), granter)
    assert got == ["a", "b"] * 6
    assert CHAN not in credits.waiters and not credits.roused


def test_a_new_sender_queues_behind_the_waiters(hub):
    credits, d = starved(hub, cap=2)
    got = []

    def waiter():
        credits.acquire(d)
        got.append("waiter")

    def late():
        assert len(credits.waiters[CHAN]) == 1
        credits.avail[(1, CHAN)] = 1  # credit is there, but someone waits for it already
        credits.acquire(d)
        got.append("late")

    def granter():
        parked(hub, credits, 2)
        credits.grant(1, CHAN, 1)

    run(hub, waiter, late, granter)
    assert got == ["waiter", "late"]


def test_a_waiter_stopped_while_parked_gives_up_its_turn(hub):
    credits, d = starved(hub, cap=1)
    got = []

    def first():
        with pytest.raises(KeyError):
            credits.acquire(d)
        got.append("stopped")

    def second():
        credits.acquire(d)
        got.append("second")

    def stopper():
        parked(hub, credits, 2)
        hub.throw(tasks[0], KeyError("stop"))
        hub.yield_now()
        credits.grant(1, CHAN, 1)

    tasks = [hub.spawn(first)]
    run(hub, second, stopper)
    assert got == ["stopped", "second"]
    assert CHAN not in credits.waiters


def test_grant_for_an_unused_window_changes_nothing(hub):
    credits = Credits(hub)
    credits.grant(1, CHAN, 5)
    assert credits.avail == {}
    got = []
    run(hub, lambda: got.append(credits.acquire(dest([1], cap=1))))
    assert got == [1] and credits.avail == {(1, CHAN): 0}  # still cap, not cap + 5


def test_acquire_outside_a_task_with_no_credit_is_an_error(hub):
    credits = Credits(hub)
    credits.avail[(1, CHAN)] = 0
    with pytest.raises(RuntimeError, match="outside a node task"):
        credits.acquire(dest([1], cap=1))


def test_reset_peer_refills_its_windows_and_wakes_waiters(hub):
    credits = Credits(hub)
    credits.avail.update({(1, CHAN): 0, (1, 7): 0, (2, CHAN): 3})
    d = dest([1], cap=2)
    got = []

    def sender():
        got.append(credits.acquire(d))

    def restart():
        assert list(credits.waiters[CHAN]) == [tasks[0]]
        credits.reset_peer(1)

    tasks = [hub.spawn(sender)]
    run(hub, restart)
    assert hub.run_until(lambda: bool(got), timeout=5)
    assert got == [1]
    assert credits.avail == {(1, CHAN): 1, (2, CHAN): 3}  # a fresh window of cap, one used
    assert tasks[0].dead


def test_reset_peer_leaves_other_peers_alone(hub):
    credits = Credits(hub)
    credits.avail.update({(1, CHAN): 0, (2, CHAN): 0})
    credits.reset_peer(3)
    assert credits.avail == {(1, CHAN): 0, (2, CHAN): 0}


# --- Credits: a peer that died ---------------------------------------------------------------------------------


def test_peer_died_raises_in_the_sender_waiting_for_its_credit(hub):
    credits = Credits(hub)
    d = dest([1], cap=1)
    raised = []

    def sender():
        credits.acquire(d)
        with pytest.raises(PeerDied, match="peer died"):
            credits.acquire(d)  # no credit left: parks until the peer is declared dead
        raised.append(True)

    def death():
        assert credits.waiters[CHAN]  # the sender is parked
        credits.peer_died(1)

    run(hub, sender, death)
    assert raised == [True]


def test_sending_to_a_dead_peer_raises_at_once(hub):
    credits = Credits(hub)
    credits.peer_died(1)
    with pytest.raises(PeerDied):
        credits.acquire(dest([1], cap=4))  # credit would be there: the peer is gone anyway


def test_a_dead_replica_is_skipped_while_another_lives(hub):
    credits = Credits(hub)
    credits.peer_died(1)
    got = []
    run(hub, lambda: got.extend(credits.acquire(dest([1, 2], cap=2)) for _ in range(2)))
    assert got == [2, 2]


def test_a_restarted_peer_is_alive_again(hub):
    credits = Credits(hub)
    credits.peer_died(1)
    credits.reset_peer(1)
    got = []
    run(hub, lambda: got.append(credits.acquire(dest([1], cap=1))))
    assert got == [1]


# --- Channels: an inbox retired before its senders closed it ---------------------------------------------


def test_a_retired_inbox_leaves_the_table_at_its_last_close_and_keeps_its_queue(hub):
    from megflow_mp.runtime.channels import CLOSE, DATA, Channels

    class Transport:
        def post(self, proc, record, size=64, segments=()):
            pass

        send_now = post

    class Codec:
        def decode(self, payload):
            return payload

    channels = Channels(hub, Transport(), Codec())
    box = channels.open_inbox(CHAN, 4, senders=2)
    channels.on_records(7, [(DATA, CHAN, "a")])
    channels.retire_inbox(box)  # its instance ended; one sender has not closed yet
    assert channels.inboxes[CHAN] is box
    channels.on_records(7, [(DATA, CHAN, "b"), (CLOSE, CHAN, None)])
    assert channels.inboxes[CHAN] is box  # still routed: a sender is left
    channels.on_records(8, [(CLOSE, CHAN, None)])
    assert CHAN not in channels.inboxes and not channels.retiring
    assert [box.take(), box.take()] == ["a", "b"] and box.closed  # whoever reads it takes what was queued
    closed = channels.open_inbox(CHAN + 1, 4, senders=1)
    channels.on_records(7, [(CLOSE, CHAN + 1, None)])
    channels.retire_inbox(closed)  # already closed: out at once
    assert CHAN + 1 not in channels.inboxes


# --- Channels: destinations that pick their replica by a key ----------------------------------------------


def test_a_keyed_destination_keeps_each_key_on_one_replica_and_balances_new_keys(hub):
    from megflow_mp.envelope import Envelope
    from megflow_mp.runtime.channels import DATA, Channels

    class Transport:
        def __init__(self):
            self.sent = []

        def post(self, proc, record, size=64, segments=()):
            if record[0] == DATA:
                self.sent.append(proc)

        send_now = post

    class Codec:
        def encode(self, value, copies, msg):
            return b"x", ()

        def decode(self, payload):
            return payload

    transport = Transport()
    channels = Channels(hub, transport, Codec())
    send = channels.sender([Dest(CHAN, (5, 6), False, 100, key="to_addr")])

    def envelope(addr, msg="m"):
        e = Envelope.pack(msg)
        e.to_addr = addr
        return e

    def body():
        for addr in ("a", "b", "a", "c", "b", "a"):
            send(envelope(addr))
        send(envelope("a", None))  # the end of "a": the key goes after this one
        send(envelope("d"))
        with pytest.raises(TypeError, match="takes an Envelope"):
            send({"not": "an envelope"})

    run(hub, body)
    # a -> 5, b -> 6 (fewest keys), c -> 5 (a tie: the lower), a's end on 5, d -> 5 (a gone: 5 has c, 6 has b)
    assert transport.sent == [5, 6, 5, 5, 6, 5, 5, 5]
