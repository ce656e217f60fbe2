"""Transport: batched records between processes over abstract SOCK_SEQPACKET sockets, segment fds.

Several transports live in this one process, each with its own Hub and listener (``listen(run_id,
i)`` with a run id unique to the test); a receiver's hub is run until its ``on_records`` saw what the
test waits for. The sending hub is never run unless a test says so, so its idle hook never flushes.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from megflow_mp.runtime.channels import DATA
from megflow_mp.runtime.hub import Hub
from megflow_mp.runtime.transport import MAX_BATCH, MAX_BATCH_BYTES, STALE, Transport, address, listen
from megflow_mp.shm import Arena


class Peer:
    """One process of the app: hub, transport, and the batches it received as ``(src, records)``."""

    def __init__(self, run_id: str, index: int, arena=None):
        self.hub = Hub()
        self.batches: list = []
        self.arena = arena
        self.transport = Transport(self.hub, run_id, index, listen(run_id, index), arena,
                                   lambda src, records: self.batches.append((src, records)))

    @property
    def records(self) -> list:
        return [r for _, records in self.batches for r in records]

    def run_until(self, cond, timeout: float = 10) -> None:
        assert self.hub.run_until(cond, timeout=timeout), "condition not reached"

    def close(self) -> None:
        self.transport.close()
        self.hub.close()


@pytest.fixture
def run_id():
    return uuid.uuid4().hex[:12]


@pytest.fixture
def peers(run_id):
    made: list[Peer] = []

    def make(index: int, arena=None) -> Peer:
        peer = Peer(run_id, index, arena)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()
        if peer.arena is not None:
            peer.arena.close()


def just_woke(peer: Peer) -> None:
    """The sending hub looks as if it had just woken: no post is written at once (deterministic counts)."""
    peer.hub.woke = float("inf")


def test_address_is_abstract_and_unique_per_process():
    assert address("abc", 0).startswith("\0")
    assert address("abc", 0) != address("abc", 1) != address("abd", 1)


def test_records_arrive_in_order_with_their_sender(peers):
    a, b = peers(0), peers(1)
    sent = [(DATA, 7, i.to_bytes(4, "little")) for i in range(1000)]
    for rec in sent:
        a.transport.post(1, rec)
    a.transport.flush_all()
    b.run_until(lambda: len(b.records) == len(sent))
    assert b.records == sent
    assert {src for src, _ in b.batches} == {0}


def test_both_directions(peers):
    a, b = peers(0), peers(1)
    a.transport.send_now(1, (DATA, 1, b"ping"))
    b.run_until(lambda: b.records)
    b.transport.send_now(0, (DATA, 2, b"pong"))
    a.run_until(lambda: a.records)
    assert b.batches == [(0, [(DATA, 1, b"ping")])]
    assert a.batches == [(1, [(DATA, 2, b"pong")])]


def test_many_posts_share_few_datagrams(peers):
    a, b = peers(0), peers(1)
    just_woke(a)
    n = 3 * MAX_BATCH + 10
    for i in range(n):
        a.transport.post(1, (DATA, 7, i))
    a.transport.flush_all()
    b.run_until(lambda: len(b.records) == n)
    assert [len(records) for _, records in b.batches] == [MAX_BATCH] * 3 + [10]
    assert b.records == [(DATA, 7, i) for i in range(n)]


def test_a_batch_is_written_once_it_holds_enough_bytes(peers):
    a, b = peers(0), peers(1)
    just_woke(a)
    size = MAX_BATCH_BYTES // 4
    for i in range(4):
        a.transport.post(1, (DATA, 7, i), size)
    b.run_until(lambda: b.records)  # the fourth post filled the batch: written without a flush
    assert b.batches == [(0, [(DATA, 7, i) for i in range(4)])]


def test_a_batch_older_than_stale_is_written_when_the_node_returns(peers):
    a, b, c = peers(0), peers(1), peers(2)
    just_woke(a)
    a.transport.post(1, (DATA, 7, "sent, then computed"))
    a.transport.flush_stale()  # young: it waits for more (or for the hub to wait)
    assert a.transport._pending == {1: [(DATA, 7, "sent, then computed")]}
    a.transport._oldest -= 2 * STALE  # the node computed for longer than STALE after sending
    a.transport.flush_stale()
    assert a.transport._pending == {}
    b.run_until(lambda: b.records)
    assert b.records == [(DATA, 7, "sent, then computed")]
    c.transport.flush_stale()  # nothing pending: nothing to do
    assert a.transport._pending == {} and c.transport._out == {}


def test_a_transport_starts_no_thread(peers):
    before = threading.active_count()
    peers(0)
    assert threading.active_count() == before


def test_a_post_after_a_spell_of_work_is_written_at_once(peers):
    a, b = peers(0), peers(1)
    a.hub.woke = a.transport._last_post = time.monotonic() - 1  # busy for 1 s, nothing posted meanwhile
    a.transport.post(1, (DATA, 7, "computed"))
    b.run_until(lambda: b.records)
    assert b.records == [(DATA, 7, "computed")]
    a.transport.post(1, (DATA, 7, "right after"))  # a quick second post waits for the batch's flush
    assert a.transport._pending == {1: [(DATA, 7, "right after")]}


def test_idle_hook_flushes_when_the_sender_hub_waits(peers):
    a, b, c = peers(0), peers(1), peers(2)
    just_woke(a)
    a.transport.post(1, (DATA, 7, "held"))
    c.transport.send_now(1, (DATA, 8, "probe"))
    b.run_until(lambda: b.records)
    assert b.records == [(DATA, 8, "probe")]  # a's record is still queued in a
    idled = []

    def hook():  # runs after a's own flush hook; the call makes the hub look at ``idled`` again
        idled.append(True)
        a.hub.call_soon_threadsafe(lambda: None)

    a.hub.idle_hooks.append(hook)
    assert a.hub.run_until(lambda: bool(idled), timeout=10)
    b.run_until(lambda: len(b.records) == 2)
    assert b.records == [(DATA, 8, "probe"), (DATA, 7, "held")]


def test_post_to_a_missing_peer_is_dropped(peers):
    a = peers(0)
    just_woke(a)
    a.transport.post(5, (DATA, 7, "nobody"))
    a.transport.flush_all()  # nobody listens at process 5: no exception, nothing kept
    assert a.transport._pending == {} and 5 not in a.transport._out


# --- shared-memory segments --------------------------------------------------------------------------------


def arenas(n: int = 3) -> list[Arena]:
    return [Arena(i, n, 1 << 20) for i in range(n)]


class Mapped:
    """Wraps ``arena.map_remote`` to count the segment fds a process received."""

    def __init__(self, arena: Arena):
        self.keys: list = []
        real = arena.map_remote

        def map_remote(key, fd):
            self.keys.append(tuple(key))
            real(key, fd)

        arena.map_remote = map_remote


def test_segment_fd_travels_once_per_peer(peers):
    ar = arenas()
    a, b, c = peers(0, ar[0]), peers(1, ar[1]), peers(2, ar[2])
    mb, mc = Mapped(ar[1]), Mapped(ar[2])
    block = ar[0].alloc(16)
    ar[0].payload(block)[:5] = b"hello"
    key = (block.owner, block.segment)
    for i in range(3):
        a.transport.post(1, (DATA, 7, i), segments=[key])
        a.transport.flush(1)
    a.transport.post(2, (DATA, 8, 0), segments=[key])
    a.transport.flush(2)
    b.run_until(lambda: len(b.records) == 3)
    c.run_until(lambda: len(c.records) == 1)
    assert len(b.batches) == 3  # three datagrams, one fd
    assert mb.keys == [key] and mc.keys == [key]
    assert bytes(ar[1].payload(block)[:5]) == b"hello"  # b mapped a's memory
    ar[1].payload(block)[:5] = b"world"
    assert bytes(ar[0].payload(block)[:5]) == b"world"
    ar[0].release_hold(block)


def test_fds_of_several_segments_in_one_datagram(peers):
    ar = arenas(2)
    a, b = peers(0, ar[0]), peers(1, ar[1])
    mb = Mapped(ar[1])
    small = ar[0].alloc(16)
    big = ar[0].alloc(2 << 20)  # larger than the segment size: a second segment
    keys = [(small.owner, small.segment), (big.owner, big.segment)]
    assert keys[0] != keys[1]
    a.transport.post(1, (DATA, 7, 0), segments=keys)
    a.transport.flush(1)
    b.run_until(lambda: b.records)
    assert mb.keys == keys
    assert all(ar[1].knows(k) for k in keys)
    ar[0].release_hold(small)
    ar[0].release_hold(big)


# --- restarted peers ----------------------------------------------------------------------------------------


def test_reset_peer_drops_queued_records_and_reconnects(run_id, peers):
    ar = arenas(2)
    a = peers(0, ar[0])
    just_woke(a)
    old = Peer(run_id, 1, ar[1])
    key = (0, ar[0].alloc(16).segment)
    a.transport.post(1, (DATA, 7, "to the old one"), segments=[key])
    a.transport.flush(1)
    old.run_until(lambda: old.records)
    assert old.arena.knows(key)
    a.transport.post(1, (DATA, 7, "queued for the old one"), segments=[key])
    old.close()  # the process died; a new one listens at the same address
    new_arena = Arena(1, 2, 1 << 20)
    new = peers(1, new_arena)
    mapped = Mapped(new_arena)
    a.transport.reset_peer(1)
    a.transport.post(1, (DATA, 7, "to the new one"), segments=[key])
    a.transport.flush(1)
    new.run_until(lambda: new.records)
    assert new.records == [(DATA, 7, "to the new one")]
    assert mapped.keys == [key]  # the new process got the fd again
    assert old.records == [(DATA, 7, "to the old one")]
    ar[1].close()


def test_a_record_sent_to_a_dead_peer_is_lost_and_the_next_reconnects(run_id, peers):
    a = peers(0)
    just_woke(a)
    old = Peer(run_id, 1)
    a.transport.send_now(1, (DATA, 7, 1))
    old.run_until(lambda: old.records)
    old.close()
    new = peers(1)
    a.transport.send_now(1, (DATA, 7, 2))  # the old connection is broken: dropped, not raised
    a.transport.send_now(1, (DATA, 7, 3))
    new.run_until(lambda: new.records)
    assert new.records == [(DATA, 7, 3)]


def test_segment_fds_are_sent_again_after_a_reconnect(run_id, peers):
    ar = arenas(2)
    a = peers(0, ar[0])
    just_woke(a)
    old = Peer(run_id, 1, ar[1])
    key = (0, ar[0].alloc(16).segment)
    a.transport.post(1, (DATA, 7, 1), segments=[key])
    a.transport.flush(1)
    old.run_until(lambda: old.records)
    old.close()
    new_arena = Arena(1, 2, 1 << 20)
    new = peers(1, new_arena)
    a.transport.send_now(1, (DATA, 7, 2))  # broken connection: dropped
    a.transport.post(1, (DATA, 7, 3), segments=[key])
    a.transport.flush(1)
    new.run_until(lambda: new.records)
    ar[1].close()
    assert new_arena.knows(key)  # otherwise decoding the record's arrays raises LookupError
