"""Arena: memfd segments, ring allocation/reclamation, reference counting, views, fork safety.

Several arenas in ONE process stand for several processes where only the counting protocol matters
(a segment is "passed" with os.dup); real processes are used where the kernel's part matters.
"""

import gc
import os
import queue
import signal
import socket
import threading
import weakref

import numpy as np
import pytest

from megflow_mp.shm import ALIGN, Arena, Block

MB = 1 << 20


@pytest.fixture(autouse=True)
def no_dev_shm_files():
    before = set(os.listdir("/dev/shm"))
    yield
    gc.collect()
    assert set(os.listdir("/dev/shm")) - before == set()


def share(src: Arena, dst: Arena, block: Block) -> None:
    """What the transport does: pass the segment fd (here: dup) unless dst already has it."""
    key = (block.owner, block.segment)
    if not dst.knows(key):
        dst.map_remote(key, os.dup(src.fd_of(key)))


def send(owner: Arena, receiver: Arena, block: Block, n: int = 1) -> None:
    """Owner hands n references of a fresh block to receiver: add refs, then drop the hold."""
    share(owner, receiver, block)
    owner.add_refs(block, n)
    owner.release_hold(block)


def live_offsets(arena: Arena, segment: int = 0) -> list:
    return [off for off, _ in arena._rings[segment].live]


def test_alloc_payload_release_reclaim():
    a = Arena(0, 1, MB)
    assert a.in_use()["segments"] == 0  # segments are created lazily
    b = a.alloc(1000)
    assert b == Block(0, 0, 0)
    pl = a.payload(b)
    assert len(pl) == 1000 and not pl.readonly
    pl[:3] = b"abc"
    del pl
    assert a.in_use()["blocks"] == 1
    a.release_hold(b)
    assert a.in_use()["blocks"] == 0  # in_use (like alloc) reclaims free ring tails first
    b2 = a.alloc(10)
    assert b2.offset == 0 and a.in_use()["blocks"] == 1
    a.release_hold(b2)
    a.close()


def test_alignment_and_header():
    a = Arena(0, 5, MB)
    assert a.header_size % ALIGN == 0 and a.header_size >= 8 * (2 + 10)
    blocks = [a.alloc(n) for n in (1, 63, 64, 65, 1000)]
    for b in blocks:
        assert b.offset % ALIGN == 0
        addr = np.frombuffer(a.payload(b), np.uint8).__array_interface__["data"][0]
        assert addr % ALIGN == 0
    assert [len(a.payload(b)) for b in blocks] == [1, 63, 64, 65, 1000]
    with pytest.raises(ValueError):
        a.release_hold(Block(1, 0, 0))
    with pytest.raises(ValueError):
        a.alloc(-1)
    with pytest.raises(ValueError):
        Arena(2, 2)


def test_ring_wraps_and_reuses_memory():
    a = Arena(0, 2, MB)
    outstanding, offsets = [], []
    for _ in range(300):
        b = a.alloc(100_000)
        offsets.append(b.offset)
        outstanding.append(b)
        if len(outstanding) > 3:  # keep a few in flight, free in FIFO order like a stream
            a.release_hold(outstanding.pop(0))
    assert a.in_use()["segments"] == 1 and a.in_use()["bytes"] == MB
    assert offsets.count(0) > 10  # wrapped around many times
    assert a.in_use()["blocks"] <= 5


def test_ring_stays_small_while_few_blocks_are_in_flight():
    """A stream keeping 4 blocks in flight cycles through about twice that span, not the whole
    segment: its frames land in memory that is already mapped and warm in the caches."""
    a = Arena(0, 2, 64 * MB)
    outstanding, highest = [], 0
    for _ in range(500):
        b = a.alloc(100_000)
        highest = max(highest, b.offset)
        outstanding.append(b)
        if len(outstanding) > 4:
            a.release_hold(outstanding.pop(0))
    assert highest < 12 * (100_000 + a.header_size)  # 64 MB would be 600+ blocks


def test_a_held_tail_does_not_grow_the_arena():
    """A block kept for long (a frame a slow consumer keeps) stops the ring's tail; the free blocks
    behind it are still reused."""
    a = Arena(0, 2, MB)
    held = a.alloc(100_000)
    for _ in range(30):
        a.release_hold(a.alloc(100_000))
    assert a.in_use()["segments"] == 1 and a.in_use()["blocks"] == 1
    assert live_offsets(a) == [held.offset]
    a.release_hold(held)
    assert a.in_use()["blocks"] == 0


def test_a_small_wrapped_ring_uses_the_rest_of_its_segment():
    """A ring that wrapped early (few blocks in flight) and then gets more in flight than its front
    holds places them after its tail, in the same segment: no new segment while this one has room."""
    a = Arena(0, 2, 4 * MB)
    outstanding = []
    for _ in range(40):  # 3 in flight: the ring wraps early and cycles through a small front
        outstanding.append(a.alloc(100_000))
        if len(outstanding) > 3:
            a.release_hold(outstanding.pop(0))
    assert max(live_offsets(a)) < 8 * (100_000 + a.header_size)
    for _ in range(20):  # the consumer stalls: 20 more in flight, more than the front can hold
        outstanding.append(a.alloc(100_000))
    assert a.in_use()["segments"] == 1 and a.in_use()["blocks"] == 23
    offsets = sorted(live_offsets(a))
    assert all(b - a_ >= 100_000 for a_, b in zip(offsets, offsets[1:])), "blocks overlap"
    for b in outstanding:
        a.release_hold(b)
    assert a.in_use()["blocks"] == 0


def test_growth_when_the_held_bytes_exceed_a_segment_then_reuse():
    a = Arena(0, 2, MB)
    held = [a.alloc(100_000) for _ in range(15)]  # 1.5 MB held at once
    assert a.in_use()["segments"] == 2
    for b in held:
        a.release_hold(b)
    held = []
    for _ in range(200):  # 1.2 MB in flight: both segments are used, none more
        held.append(a.alloc(100_000))
        if len(held) > 12:
            a.release_hold(held.pop(0))
    assert a.in_use()["segments"] == 2 and a.in_use()["bytes"] == 2 * MB


def test_blocks_never_overlap_under_random_lifetimes():
    """Blocks of random sizes released in random order, each payload filled with its own byte:
    no allocation ever writes into a live block (its header or its payload)."""
    rng = np.random.default_rng(7)
    a = Arena(0, 2, MB)
    live = {}

    def intact(b) -> bool:
        return bool((np.frombuffer(a.payload(b), np.uint8) == live[b]).all())

    for step in range(3000):
        if live and (len(live) > 20 or rng.random() < 0.45):
            b = list(live)[rng.integers(len(live))]
            assert intact(b), "a live block was overwritten"
            del live[b]
            a.release_hold(b)
        else:
            b = a.alloc(int(rng.integers(1, 60_000)))
            live[b] = step % 251
            np.frombuffer(a.payload(b), np.uint8)[:] = live[b]
    assert a.in_use()["segments"] <= 2
    for b in list(live):
        assert intact(b)
        a.release_hold(b)


def test_block_larger_than_segment():
    a = Arena(0, 2, MB)
    small = a.alloc(100)
    big = a.alloc(3 * MB)
    assert big.segment == 1 and big.offset == 0
    assert a.in_use()["segments"] == 2 and a.in_use()["bytes"] >= MB + 3 * MB + a.header_size
    pl = a.payload(big)
    assert len(pl) == 3 * MB
    pl[-1] = 7
    del pl
    a.release_hold(big)
    a.release_hold(small)
    for _ in range(50):
        a.release_hold(a.alloc(200_000))
    assert a.in_use()["segments"] == 2  # freed space is reused, nothing new is created


def test_views_count_until_last_derived_array_dies():
    a, b = Arena(0, 2, MB), Arena(1, 2)
    blk = a.alloc(80)
    np.frombuffer(a.payload(blk), np.int64)[:] = np.arange(10)
    send(a, b, blk)
    arr = b.view(blk, 0, (10,), (8,), "<i8")
    assert arr.flags.writeable and list(arr) == list(range(10))
    crop = arr[2:8:2]
    del arr
    gc.collect()
    assert b.find(crop) == (blk, 16)
    assert b.in_use()["views"] == 1
    assert a.in_use()["blocks"] == 1  # the crop still holds the block
    del crop
    gc.collect()
    assert b.in_use()["views"] == 0
    assert a.in_use()["blocks"] == 0
    assert a.alloc(8).offset == 0  # its memory is reused


def test_view_of_own_block_and_find():
    a = Arena(0, 1, MB)
    blk = a.alloc(4 * 6 * 4)
    a.add_refs(blk, 1)
    a.release_hold(blk)
    arr = a.view(blk, 0, (4, 6), (24, 4), "<f4")
    arr[:] = 1.5
    assert np.frombuffer(a.payload(blk), "<f4").sum() == 1.5 * 24  # same memory
    back = arr[::-1, 1::2]  # negative strides
    found, off = a.find(back)
    assert found == blk and off == 3 * 24 + 4
    a.add_refs(blk, 1)  # one more reference, as if `back` had been sent to ourselves
    rebuilt = a.view(blk, off, back.shape, back.strides, back.dtype.str)
    assert np.shares_memory(back, rebuilt)  # same mapping, separate roots
    np.testing.assert_array_equal(rebuilt, back)
    assert a.find(np.zeros(3)) is None and a.find(arr.copy()) is None
    a.add_refs(blk, 1)
    with pytest.raises(ValueError):  # out of the payload: refused, and the reference is dropped anyway
        a.view(blk, 0, (1000,), (4,), "<f4")
    assert a.in_use()["blocks"] == 1
    del arr, back, rebuilt
    gc.collect()
    assert a.in_use()["blocks"] == 0


def test_map_remote_is_idempotent_and_unknown_segments_raise():
    a, b = Arena(0, 2, MB), Arena(1, 2)
    blk = a.alloc(10)
    key = (0, 0)
    assert a.knows(key) and not b.knows(key)
    with pytest.raises(LookupError):
        b.view(blk, 0, (10,), (1,), "|u1")
    with pytest.raises(LookupError):
        b.fd_of(key)
    b.map_remote(key, os.dup(a.fd_of(key)))
    dup = os.dup(a.fd_of(key))
    b.map_remote(key, dup)  # already known: the duplicate is closed
    with pytest.raises(OSError):
        os.fstat(dup)
    assert b.knows(key) and b.fd_of(key) != a.fd_of(key)


def test_segments_are_memfds_and_sealed():
    a = Arena(0, 2, MB)
    a.alloc(10)
    fd = a.fd_of((0, 0))
    assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:megflow-0-0")
    with pytest.raises(PermissionError):
        os.ftruncate(fd, 0)  # a receiver cannot shrink it under the other processes


def test_close_never_raises_and_waits_for_views():
    a, b = Arena(0, 2, MB), Arena(1, 2)
    blk = a.alloc(16)
    send(a, b, blk)
    arr = b.view(blk, 0, (16,), (1,), "|u1")
    fd = b.fd_of((0, 0))
    b.close()  # a view is alive: nothing is closed
    os.fstat(fd)
    arr[0] = 1
    del arr
    gc.collect()
    b.close()
    b.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    with pytest.raises(RuntimeError):
        b.add_refs(blk, 1)
    keep = a.payload(blk)  # an exported payload must not make close raise
    a.close()
    del keep


def test_forked_child_does_not_change_counts():
    a, b = Arena(0, 2, MB), Arena(1, 2)
    blk = a.alloc(64)
    send(a, b, blk)
    arr = b.view(blk, 0, (64,), (1,), "|u1")
    arr[:] = 9
    pid = os.fork()
    if pid == 0:  # child of the receiver: drops the view, runs the exit-time finalizers, exits
        code = 1
        try:
            ok = b.find(arr) is None
            del arr
            gc.collect()
            weakref.finalize._exitfunc()  # what interpreter exit runs
            try:
                b.alloc(1)
            except RuntimeError:
                code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert a.in_use()["blocks"] == 1  # still referenced by the parent's view
    assert b.find(arr[1:]) == (blk, 1)
    del arr
    gc.collect()
    assert a.in_use()["blocks"] == 0


def test_memory_survives_sigkill_of_owner():
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    parent_sock.settimeout(30)
    pid = os.fork()
    if pid == 0:  # owner process
        try:
            owner = Arena(0, 2, MB)
            blk = owner.alloc(1 << 16)
            np.frombuffer(owner.payload(blk), np.uint8)[:] = 42
            owner.add_refs(blk, 1)
            owner.release_hold(blk)
            socket.send_fds(child_sock, [repr(tuple(blk)).encode()], [owner.fd_of((0, 0))])
            signal.pause()
        finally:
            os._exit(1)
    b = Arena(1, 2)
    msg, fds, _, _ = socket.recv_fds(parent_sock, 1024, 1)
    blk = Block(*eval(msg.decode()))
    b.map_remote((0, 0), fds[0])
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    arr = b.view(blk, 0, (1 << 16,), (1,), "|u1")
    assert (arr == 42).all()  # the kernel keeps the memfd while we map it
    arr[:] = 1
    del arr
    b.close()


def test_threads_with_finalizers_in_any_thread():
    a, b = Arena(0, 2, 4 * MB), Arena(1, 2)
    errors, handoff = [], queue.Queue(maxsize=8)

    def produce(seed):
        try:
            rng = np.random.default_rng(seed)
            for _ in range(300):
                blk = a.alloc(int(rng.integers(1, 50_000)))
                send(a, b, blk, 2)
                v1 = b.view(blk, 0, (1,), (1,), "|u1")
                v2 = b.view(blk, 0, (1,), (1,), "|u1")
                v1[0] = 1
                handoff.put(v2)  # its finalizer runs in the consumer thread
                del v1, v2
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def consume():
        while handoff.get() is not None:
            pass

    consumer = threading.Thread(target=consume)
    consumer.start()
    threads = [threading.Thread(target=produce, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handoff.put(None)
    consumer.join()
    assert not errors
    gc.collect()
    assert a.in_use()["blocks"] == 0 and b.in_use()["views"] == 0


def test_empty_is_an_own_shared_array_found_by_the_codec_and_freed_with_it():
    arena = Arena(0, 2, segment_size=1 << 20)
    try:
        a = arena.empty((4, 5, 3), np.uint8)
        assert a.shape == (4, 5, 3) and a.flags.c_contiguous and a.flags.writeable
        a[:] = 7
        block, offset = arena.find(a[1:])
        assert offset == 15 and block.owner == 0
        assert arena.in_use()["blocks"] == 1 and arena.in_use()["views"] == 1
        del a
        gc.collect()
        assert arena.in_use()["blocks"] == 0 and arena.in_use()["views"] == 0
        f = arena.empty((2, 2), np.float32)
        assert f.strides == (8, 4)
        with pytest.raises(ValueError):
            arena.empty((-1, 2))
    finally:
        arena.close()
