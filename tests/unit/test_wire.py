"""The framing between machines (megflow_mp.cluster.wire): a DATA payload of one machine's shared
memory, packed, written to a real socket and read into another arena, comes back equal, with its
arrays in the receiving arena (so the receiver's codec sends them on by reference, no copy)."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from megflow_mp.cluster.wire import HOST, pack, read_frame, write_frame
from megflow_mp.codec import Codec
from megflow_mp.runtime.channels import CLOSE, CREDIT, CTRL, DATA
from megflow_mp.shm import Arena


@pytest.fixture
def two_arenas():
    a, b = Arena(0, 2, 16 << 20), Arena(1, 2, 16 << 20)
    yield a, b
    a.close()
    b.close()


def roundtrip(records, decode, empty):
    parts, keep = pack(7, 3, records, decode)
    left, right = socket.socketpair()
    with left, right:
        got = {}
        t = threading.Thread(target=lambda: got.update(frame=read_frame(right, empty)))
        t.start()
        write_frame(left, parts)
        t.join(10)
    del keep
    return got["frame"]


def test_arrays_of_every_kind_cross_once_into_the_receiving_arena(two_arenas):
    a, b = two_arenas
    ca, cb = Codec(a), Codec(b)
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    strided = rng.random((64, 64), dtype=np.float32)[::2, ::3]  # not contiguous
    rec = np.zeros(4, dtype=[("x", "<i4"), ("y", "<f8")])
    rec["x"] = [1, 2, 3, 4]
    msg = {"data": frame, "strided": strided, "rec": rec, "empty": np.zeros((0, 3)), "scalar": np.array(5.5),
           "objects": np.array(["a", None], dtype=object), "text": "é" * 10, "boxes": [(1, 2, 3, 4)]}
    payload, _ = ca.encode(msg, 1)
    records = [(DATA, 11, payload), (CREDIT, 12, 8), (CLOSE, 13, None), (CTRL, b"\x80\x05N.")]
    dest, src, got = roundtrip(records, ca.decode, b.empty)
    assert (dest, src) == (7, 3)
    assert got[1:] == records[1:]
    op, chan, out = got[0]
    assert (op, chan) == (DATA, 11)
    np.testing.assert_array_equal(out["data"], frame)
    np.testing.assert_array_equal(out["strided"], strided)
    np.testing.assert_array_equal(out["rec"], rec)
    assert out["empty"].shape == (0, 3) and float(out["scalar"]) == 5.5 and list(out["objects"]) == ["a", None]
    assert out["text"] == "é" * 10 and out["boxes"] == [(1, 2, 3, 4)]
    for name in ("data", "strided", "rec", "scalar"):
        assert b.find(out[name]) is not None, name  # received straight into b's shared memory
    _, keys = cb.encode(out, 1)
    assert keys and all(owner == 1 for owner, _ in keys)  # sent on by reference to b's blocks
    cb.decode(cb.encode(out, 1)[0])  # (consume the copies just made)


def test_the_senders_blocks_are_released_once_the_frame_is_written(two_arenas):
    a, b = two_arenas
    ca = Codec(a)
    payload, _ = ca.encode({"data": np.ones((256, 256), np.uint8)}, 1)
    assert a.in_use()["blocks"] == 1
    roundtrip([(DATA, 1, payload)], ca.decode, b.empty)
    assert a.in_use()["blocks"] == 0


def test_host_messages_and_a_closed_peer():
    parts, _ = pack(HOST, 2, [("exited", 5, "was killed by SIGKILL")], None)
    left, right = socket.socketpair()
    with right:
        write_frame(left, parts)
        left.close()
        assert read_frame(right, None) == (HOST, 2, [("exited", 5, "was killed by SIGKILL")])
        with pytest.raises(EOFError):
            read_frame(right, None)
