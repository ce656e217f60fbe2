"""The framing of records between machines: one TCP stream per direction between two bridges.

Inside a machine a DATA record's payload references arrays in shared memory (:mod:`megflow_mp.codec`);
between machines the arrays' bytes travel raw, once, after a small header:

    frame   = HEAD(header_len, nbufs) | header | buffer 0 | buffer 1 | ...
    header  = pickle((dest, src, records))     records as in :mod:`megflow_mp.runtime.channels`, except
              DATA = (DATA, chan, meta, specs)  meta: the message pickled with each array replaced by
                                                its index; specs: [(dtype, shape), ...] of the buffers

:func:`pack` turns the records a local process sent into a frame (arrays are read from shared memory
straight into the socket, never pickled); :func:`read_frame` reads one frame, receiving each array
straight into a fresh block of the receiving bridge's own shared memory, so the local receiver gets
it by reference: one copy in the kernel on each side and no other. ``dest == HOST`` marks a message
for the bridge itself (control between machines), not for a process.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import socket
import struct

import numpy as np

from ..runtime.channels import DATA

HEAD = struct.Struct("!II")
HOST = -1  # the destination of a frame for the receiving bridge itself

_MODULE = __name__


def _wire_array(index: int):
    """What an array is in a frame's meta pickle; :func:`read_frame`'s unpickler resolves it."""
    raise RuntimeError("a wire array reference can only be read by megflow_mp.cluster.wire.read_frame")


def _pickler(file, arrays: list) -> pickle.Pickler:
    """A pickler that appends each array to ``arrays`` and writes its index instead (no reference
    cycle: the arrays are free as soon as the caller drops the list)."""

    def reduce_array(arr: np.ndarray):
        if arr.dtype.hasobject or arr.size == 0:
            return arr.__reduce_ex__(5)
        arrays.append(np.ascontiguousarray(arr))
        return _wire_array, (len(arrays) - 1,)

    p = pickle.Pickler(file, 5)
    table = copyreg.dispatch_table.copy()
    table[np.ndarray] = reduce_array  # exact type: only arrays cost a Python call
    p.dispatch_table = table
    return p


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, arrays: list):
        super().__init__(io.BytesIO(data))
        self.arrays = arrays

    def find_class(self, module: str, name: str):
        if module == _MODULE and name == "_wire_array":
            return self.arrays.__getitem__
        return super().find_class(module, name)


def dumps(obj) -> tuple[bytes, list[np.ndarray]]:
    """``obj`` pickled with every (non-object, non-empty) array replaced by a reference to the
    returned list, whose arrays are C-contiguous (views of the originals when they already are)."""
    arrays: list[np.ndarray] = []
    buf = io.BytesIO()
    p = _pickler(buf, arrays)
    p.dump(obj)
    p.clear_memo()  # the memo holds the message's objects
    return buf.getvalue(), arrays


def pack(dest: int, src: int, records, decode) -> tuple[list, list]:
    """The frame of ``records`` from process ``src`` to ``dest``: ``(parts, keep)``. ``parts`` are
    the buffers to write in order; ``keep`` holds the decoded messages whose arrays ``parts`` view
    (drop it once written: the shared-memory references go with it). ``decode`` is the bridge's
    ``Codec.decode`` (each DATA payload is decoded exactly once, as the codec requires)."""
    out, parts, keep = [], [], []
    for rec in records:
        if rec[0] == DATA:
            obj = decode(rec[2])
            meta, arrays = dumps(obj)
            keep.append(arrays)
            out.append((DATA, rec[1], meta, [(a.dtype, a.shape) for a in arrays]))
            parts += [memoryview(a.reshape(-1).view(np.uint8)) for a in arrays]
        else:
            out.append(rec)
    header = pickle.dumps((dest, src, out), 5)
    return [HEAD.pack(len(header), len(parts)), header, *parts], keep


def recv_exactly(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock``; ``EOFError`` if the peer closed first."""
    while len(view):
        n = sock.recv_into(view)
        if n == 0:
            raise EOFError("connection closed by the peer")
        view = view[n:]


def read_frame(sock: socket.socket, empty) -> tuple[int, int, list]:
    """Read one frame: ``(dest, src, records)`` with each DATA record as ``(DATA, chan, message)``,
    the message's arrays received into ``empty(shape, dtype)`` (the bridge's shared memory).
    ``EOFError`` when the peer closed the connection."""
    head = bytearray(HEAD.size)
    recv_exactly(sock, memoryview(head))
    size, _nbufs = HEAD.unpack(head)
    header = bytearray(size)
    recv_exactly(sock, memoryview(header))
    dest, src, records = pickle.loads(header)
    out = []
    for rec in records:
        if rec[0] == DATA:
            arrays = []
            for dtype, shape in rec[3]:
                arr = empty(shape, dtype)
                recv_exactly(sock, memoryview(arr.reshape(-1).view(np.uint8)))
                arrays.append(arr)
            out.append((DATA, rec[1], _Unpickler(rec[2], arrays).load()))
        else:
            out.append(rec)
    return dest, src, out


def write_frame(sock: socket.socket, parts: list) -> None:
    """Write a frame's ``parts`` (from :func:`pack`) completely, with as few system calls as the
    kernel allows."""
    views = [memoryview(p).cast("B") if not isinstance(p, memoryview) else p for p in parts]
    while views:
        n = sock.sendmsg(views[:512])
        while n:
            if n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][n:]
                n = 0
