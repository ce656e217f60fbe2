"""Codec over real processes: arrays travel through memfd shared memory, fds over SCM_RIGHTS.

Process 0 is the pytest process; children (fork) are processes 1..3 of a 4-process app. Every
message on a socket is ``pickle((keys, payload, note))`` with the fds of ``keys`` attached, the way
the engine's transport sends them.
"""

import gc
import os
import pickle
import socket
import traceback
from dataclasses import dataclass

import multiprocessing as mp
import numpy as np
import pytest

from megflow_mp.codec import Codec
from megflow_mp.shm import Arena, Block

NPROCS = 4
CTX = mp.get_context("fork")
FRAME = (1080, 1920, 3)


@dataclass
class Detection:  # a custom picklable object carrying arrays
    label: str
    box: np.ndarray
    mask: np.ndarray


def make_frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, FRAME, dtype=np.uint8)


def send(sock, arena: Arena, payload=None, keys=(), note=None) -> None:
    keys = sorted(keys)
    msg = pickle.dumps((keys, payload, note))
    if keys:
        socket.send_fds(sock, [msg], [arena.fd_of(k) for k in keys])
    else:
        sock.send(msg)


def recv(sock, arena: Arena):
    """(payload, note); maps the fds that came with it. A child's failure is raised here."""
    msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 64)
    keys, payload, note = pickle.loads(msg)
    for key, fd in zip(keys, fds):
        arena.map_remote(key, fd)
    if isinstance(note, tuple) and note[:1] == ("error",):
        raise AssertionError(f"child failed:\n{note[1]}")
    return payload, note


def _child(body, index, socks):
    arena = Arena(index, NPROCS, 16 << 20)
    try:
        body(arena, Codec(arena), *socks)
    except BaseException:
        send(socks[0], arena, note=("error", traceback.format_exc()))
        raise


@pytest.fixture
def app():
    """Yields (parent arena, parent codec, spawn) where spawn(body, index) -> parent's socket."""
    procs = []
    arena = Arena(0, NPROCS, 16 << 20)
    before = set(os.listdir("/dev/shm"))

    def spawn(body, index, *extra):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        mine.settimeout(60)
        theirs.settimeout(60)
        proc = CTX.Process(target=_child, args=(body, index, (theirs, *extra)))
        proc.start()
        procs.append(proc)
        return mine

    yield arena, Codec(arena), spawn
    for proc in procs:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    assert [p.exitcode for p in procs] == [0] * len(procs)
    gc.collect()
    assert set(os.listdir("/dev/shm")) - before == set()  # memfd only, no named shared memory


def nested():
    base = np.arange(24 * 5, dtype=np.int64).reshape(24, 5)
    return {
        "frames": [
            (np.zeros((4, 6), np.float32) + 0.5, np.array([True, False, True])),
            (np.array(7, np.int64), np.asfortranarray(np.arange(12, dtype=np.uint8).reshape(3, 4))),
        ],
        "slice": base[2:20:3, ::-2],  # non-contiguous, negative strides
        "big_endian": np.arange(5, dtype=">i4"),
        "structured": np.array([(1, 2.5), (3, 4.5)], dtype=[("id", "<u2"), ("score", "<f8")]),
        "time": np.array(["2024-01-01", "2024-06-01"], dtype="datetime64[D]"),
        "complex": np.array([1 + 2j, 3 - 4j], np.complex64),
        "half": np.linspace(0, 1, 7, dtype=np.float16),
        "det": Detection("cat", np.array([1.0, 2.0, 30.0, 40.0]), np.eye(3, dtype=bool)),
        "objects": np.array([{"a": 1}, None, np.arange(3)], dtype=object),
        "empty": np.zeros((0, 3), np.float32),
        "meta": {"id": 3, "raw": b"\x00\x01", "name": "x", "f": 1.5, "none": None},
    }


def assert_same(a, b):
    if isinstance(a, np.ndarray):
        assert type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape
        if a.dtype.hasobject:
            assert len(a) == len(b)
            for x, y in zip(a.flat, b.flat):
                assert_same(x, y)
        else:
            np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, Detection):
        assert a.label == b.label
        assert_same(a.box, b.box)
        assert_same(a.mask, b.mask)
    else:
        assert a == b


def _echo(arena, codec, sock):
    """Decode, check, send the decoded structure back (by reference: no allocation here)."""
    payload, _ = recv(sock, arena)
    obj = codec.decode(payload)
    assert_same(nested(), obj)
    assert obj["det"].box.flags.writeable
    payload, keys = codec.encode(obj)
    assert arena.in_use()["segments"] == 0, "forwarding must not allocate"
    send(sock, arena, payload, keys, note="echo")
    recv(sock, arena)  # wait until the parent has decoded before dropping our views


def test_nested_round_trip_across_processes(app):
    arena, codec, spawn = app
    sock = spawn(_echo, 1)
    payload, keys = codec.encode(nested())
    assert keys == {(0, 0)}
    assert len(payload) < 4096  # the arrays are references, not pickled bytes
    send(sock, arena, payload, keys)
    back, note = recv(sock, arena)
    assert note == "echo"
    obj = codec.decode(back)  # our own blocks, referenced by the child
    assert_same(nested(), obj)
    send(sock, arena, note="done")
    del obj
    gc.collect()


def _draw_and_wait(arena, codec, sock):
    payload, _ = recv(sock, arena)
    frame = codec.decode(payload)["frame"]
    frame[10:20, 30:40] = (0, 0, 255)  # a plugin draws a box in place
    send(sock, arena, note="drawn")
    recv(sock, arena)  # "drop"
    del frame
    gc.collect()
    send(sock, arena, note="dropped")


def test_zero_copy_and_reclaim_after_receiver_drops(app):
    arena, codec, spawn = app
    frame = make_frame()
    payload, keys = codec.encode({"frame": frame, "t": 1.0})
    assert arena.in_use()["blocks"] == 1
    blk_bytes = arena.in_use()["held"]
    assert frame.nbytes <= blk_bytes <= frame.nbytes + 4096
    sock = spawn(_draw_and_wait, 1)
    send(sock, arena, payload, keys)
    assert recv(sock, arena)[1] == "drawn"
    shared = np.frombuffer(arena.payload(Block(0, 0, 0)), np.uint8).reshape(FRAME)
    assert (shared[10:20, 30:40] == (0, 0, 255)).all()  # the owner sees the receiver's write
    shared[10:20, 30:40] = frame[10:20, 30:40]
    np.testing.assert_array_equal(shared, frame)
    del shared
    assert arena.in_use()["blocks"] == 1  # the receiver still holds it
    send(sock, arena, note="drop")
    assert recv(sock, arena)[1] == "dropped"
    assert arena.in_use()["blocks"] == 0
    assert arena.alloc(10).offset == 0  # memory reused


def _forwarder(arena, codec, sock, to_c):
    payload, _ = recv(sock, arena)
    frame = codec.decode(payload)["frame"]
    out = {"frame": frame, "crop": frame[100:300, 200:600], "flip": frame[::-1, ::2, 0], "id": 7}
    payload, keys = codec.encode(out)
    assert keys == {(0, 0)}  # the owner's segment, not ours
    send(to_c, arena, payload, keys)
    assert arena.in_use() == {"segments": 0, "bytes": 0, "blocks": 0, "held": 0, "views": 1}
    send(sock, arena, note="forwarded")
    del frame, out
    gc.collect()
    recv(sock, arena)


def _final(arena, codec, sock, from_b):
    payload, _ = recv(from_b, arena)
    msg = codec.decode(payload)
    expected = make_frame()
    np.testing.assert_array_equal(msg["frame"], expected)
    np.testing.assert_array_equal(msg["crop"], expected[100:300, 200:600])
    np.testing.assert_array_equal(msg["flip"], expected[::-1, ::2, 0])
    assert np.shares_memory(msg["frame"], msg["crop"]) and np.shares_memory(msg["frame"], msg["flip"])
    assert msg["id"] == 7 and arena.in_use()["segments"] == 0
    send(sock, arena, note="checked")
    recv(sock, arena)
    del msg
    gc.collect()
    send(sock, arena, note="dropped")


def test_forwarding_reuses_owner_block(app):
    arena, codec, spawn = app
    b_to_c, c_from_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    c_from_b.settimeout(60)
    sock_c = spawn(_final, 2, c_from_b)
    sock_b = spawn(_forwarder, 1, b_to_c)
    payload, keys = codec.encode({"frame": make_frame()})
    send(sock_b, arena, payload, keys)
    assert recv(sock_b, arena)[1] == "forwarded"
    assert recv(sock_c, arena)[1] == "checked"
    send(sock_b, arena, note="exit")
    assert arena.in_use()["blocks"] == 1  # C still holds 3 views of it
    send(sock_c, arena, note="drop")
    assert recv(sock_c, arena)[1] == "dropped"
    assert arena.in_use()["blocks"] == 0


def _hold_until_told(arena, codec, sock):
    payload, _ = recv(sock, arena)
    msg = codec.decode(payload)
    assert msg["frame"][0, 0, 0] == make_frame()[0, 0, 0]
    send(sock, arena, note="got")
    recv(sock, arena)
    del msg
    gc.collect()
    send(sock, arena, note="dropped")


def test_broadcast_frees_after_all_receivers_dropped(app):
    arena, codec, spawn = app
    socks = [spawn(_hold_until_told, i) for i in (1, 2, 3)]
    frame = make_frame()
    payload, keys = codec.encode({"frame": frame, "same": frame}, copies=3)  # one reference (memo)
    for s in socks:
        send(s, arena, payload, keys)
    for s in socks:
        assert recv(s, arena)[1] == "got"
    for i, s in enumerate(socks):
        assert arena.in_use()["blocks"] == 1, f"freed after only {i} of 3 receivers dropped"
        send(s, arena, note="drop")
        assert recv(s, arena)[1] == "dropped"
    assert arena.in_use()["blocks"] == 0


def _fork_then_hold(arena, codec, sock):
    payload, _ = recv(sock, arena)
    frame = codec.decode(payload)
    def look():  # a multiprocessing child that inherits the view, reads it and exits
        assert frame[0, 0] == 1

    grandchild = CTX.Process(target=look)
    grandchild.start()
    grandchild.join()
    assert grandchild.exitcode == 0
    pid = os.fork()
    if pid == 0:  # a bare fork that drops the inherited view and exits
        del frame
        gc.collect()
        os._exit(0)
    os.waitpid(pid, 0)
    send(sock, arena, note="forked")
    recv(sock, arena)
    del frame
    gc.collect()
    send(sock, arena, note="dropped")


def test_children_of_a_receiver_do_not_change_counts(app):
    arena, codec, spawn = app
    sock = spawn(_fork_then_hold, 1)
    send(sock, arena, *codec.encode(np.ones((64, 64), np.float32)))
    assert recv(sock, arena)[1] == "forked"
    assert arena.in_use()["blocks"] == 1
    send(sock, arena, note="drop")
    assert recv(sock, arena)[1] == "dropped"
    assert arena.in_use()["blocks"] == 0


# -- in one process (two arenas stand for two processes; segments passed with os.dup) -------------------
def trio():
    """Arenas and codecs of processes 0, 1, 2."""
    arenas = [Arena(i, 3, 16 << 20) for i in range(3)]
    return [x for arena in arenas for x in (arena, Codec(arena))]


def deliver(src, dst, dst_codec, payload, keys):
    for key in keys:
        if not dst.knows(key):
            dst.map_remote(key, os.dup(src.fd_of(key)))
    return dst_codec.decode(payload)


def test_object_dtype_and_empty_arrays_are_pickled_normally():
    a, ca, b, cb, c, cc = trio()
    obj = {"o": np.array(["a", 1, None], dtype=object), "e": np.empty((0, 5))}
    payload, keys = ca.encode(obj)
    assert keys == frozenset() and a.in_use()["segments"] == 0
    assert_same(obj, deliver(a, b, cb, payload, keys))
    inner = np.array([np.arange(4), None], dtype=object)  # arrays inside object arrays: shared memory
    payload, keys = ca.encode(inner)
    back = deliver(a, b, cb, payload, keys)
    assert keys == {(0, 0)} and b.find(back[0]) is not None
    np.testing.assert_array_equal(back[0], np.arange(4))


def test_an_array_deeper_than_the_probe_still_travels_in_shared_memory():
    a, ca, b, cb, c, cc = trio()
    deep = {"l1": [{"l3": (np.arange(6, dtype=np.int16),)}], "word": "numpy", "s": np.float32(1.5)}
    payload, keys = ca.encode(deep)
    assert keys == {(0, 0)}
    back = deliver(a, b, cb, payload, keys)
    assert b.find(back["l1"][0]["l3"][0]) is not None  # a view of the block, not pickled bytes
    assert_same(deep, back)
    plain = {"word": "numpy is a word", "i": 3}  # the byte search may send it the slow way: same result
    assert ca.encode(plain)[1] == frozenset()
    assert deliver(a, b, cb, *ca.encode(plain)) == plain


def test_same_array_object_is_one_reference_distinct_views_are_two():
    a, ca, b, cb, c, cc = trio()
    x = np.arange(100, dtype=np.int32)
    msg = deliver(a, b, cb, *ca.encode({"a": x, "b": [x]}))
    assert msg["a"] is msg["b"][0] and b.in_use()["views"] == 1
    payload, keys = cb.encode((msg["a"], msg["a"][10:]))  # two references to one block
    one, two = deliver(b, c, cc, payload, keys)
    assert np.shares_memory(one, two) and c.in_use()["views"] == 2
    del msg
    del one
    gc.collect()
    assert a.in_use()["blocks"] == 1
    del two
    gc.collect()
    assert a.in_use()["blocks"] == 0


def test_unknown_segment_raises_lookup_error():
    a, ca, b, cb, c, cc = trio()
    payload, keys = ca.encode([np.zeros(3)])
    with pytest.raises(LookupError, match="not mapped"):
        cb.decode(payload)


class Boom:
    def __reduce__(self):
        raise ValueError("cannot pickle")


def test_failed_encode_releases_its_blocks():
    a, ca, b, cb, c, cc = trio()
    with pytest.raises(ValueError, match="cannot pickle"):
        ca.encode([np.ones(1000), Boom()])
    assert a.in_use()["blocks"] == 0
    with pytest.raises(ValueError):
        ca.encode(np.ones(3), copies=-1)
    ca.encode(np.ones(3), copies=0)  # no destination: nothing stays referenced
    assert a.in_use()["blocks"] == 0


def test_frame_is_one_copy_and_forwarding_allocates_nothing():
    a, ca, b, cb, c, cc = trio()
    frame = make_frame()
    payload, keys = ca.encode(frame)
    assert a.in_use()["blocks"] == 1 and a.in_use()["held"] - a.header_size == frame.nbytes
    got = deliver(a, b, cb, payload, keys)
    assert got.flags.c_contiguous and got.flags.writeable
    np.testing.assert_array_equal(got, frame)
    crop = got[200:400, 300:700]
    fwd = deliver(b, c, cc, *cb.encode([got, crop]))
    assert b.in_use()["segments"] == 0 and a.in_use()["blocks"] == 1
    assert np.shares_memory(fwd[0], fwd[1])
    fwd[1][:] = 0  # C's write is visible to B: the same physical memory
    assert not crop.any()
    del got, crop, fwd
    gc.collect()
    assert a.in_use()["blocks"] == 0


def test_undeliverable_copy_is_released_by_decoding_it_in_the_sender():
    a, ca, b, cb, c, cc = trio()
    frame = make_frame()
    got = deliver(a, b, cb, *ca.encode(frame))
    payload, keys = cb.encode({"f": got}, copies=2)  # B forwards to two destinations
    delivered = deliver(b, c, cc, payload, keys)
    cb.decode(payload)  # the second destination died: B drops that copy itself
    del got
    gc.collect()
    assert a.in_use()["blocks"] == 1
    del delivered
    gc.collect()
    assert a.in_use()["blocks"] == 0


def test_big_payloads_travel_in_shared_memory():
    a, ca, b, cb, c, cc = trio()
    big = {"blob": bytes(range(256)) * 8192, "text": "x" * 300_000, "arr": np.arange(10)}
    payload, keys = ca.encode(big)
    assert len(payload) < 4096  # only a reference goes over the socket
    out = deliver(a, b, cb, payload, keys)
    assert out["blob"] == big["blob"] and out["text"] == big["text"]
    assert np.array_equal(out["arr"], np.arange(10))
    del out
    gc.collect()
    assert a.in_use()["blocks"] == 0


def test_crops_of_received_frames_are_forwarded_without_pickling_their_bytes():
    a, ca, b, cb, c, cc = trio()
    frame = np.arange(1080 * 1920 * 3, dtype=np.uint32).astype(np.uint8).reshape(1080, 1920, 3)
    got = deliver(a, b, cb, *ca.encode({"data": frame}))
    crop, channel = got["data"][100:600, 200:1000], got["data"][..., 0]
    payload, keys = cb.encode({"crop": crop, "chan": channel}, probe={"crop": crop})
    assert len(payload) < 4096  # references only, no pixel went into the pickle
    assert b.in_use()["blocks"] == 0  # and nothing was copied in the forwarding process
    out = deliver(b, c, cc, payload, keys)
    assert np.array_equal(out["crop"], frame[100:600, 200:1000])
    assert np.array_equal(out["chan"], frame[..., 0])
    assert isinstance(out["crop"], np.ndarray) and out["crop"].dtype == np.uint8
