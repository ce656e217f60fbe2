"""Gen (source) -> ppl (5 x noop subgraph) -> Reorder (built-in) -> Printer (sink)."""

import json
import sys
import zlib

import numpy as np

from megflow.func_op import *  # noqa: F401,F403


def emit(tag, obj):
    """Print ``tag <json>`` as one write: worker processes share stdout, and ``print(a, b)`` writes
    its pieces separately when Python runs unbuffered (PYTHONUNBUFFERED), so lines could interleave."""
    sys.stdout.write(f"{tag} {json.dumps(obj, sort_keys=True)}\n")
    sys.stdout.flush()


def make_array(i):
    """A deterministic uint8 image whose size and content depend on ``i``."""
    h, w = 16 + i % 7, 24 + 3 * (i % 5)
    return ((np.arange(h * w * 3, dtype=np.uint32) * 7 + i) % 251).astype(np.uint8).reshape(h, w, 3)


def checksum(a):
    return zlib.crc32(np.ascontiguousarray(a).tobytes())


@map_def()
def noop(x):
    return x


@source_def()
def gen(context=None):
    for i in range(context.n):
        data = make_array(i)
        yield {"id": i, "data": data, "checksum": checksum(data)}


@sink_def()
def printer(x):
    data = x["data"]
    if not isinstance(data, np.ndarray):  # report it (the test fails on ok=false) rather than crash
        emit("result", {"id": x["id"], "type": type(data).__name__, "ok": False})
        return
    expected = make_array(x["id"])
    ok = (data.dtype == expected.dtype and data.shape == expected.shape and checksum(data) == x["checksum"]
          and np.array_equal(data, expected))
    emit("result", {"id": x["id"], "shape": list(data.shape), "checksum": checksum(data), "ok": bool(ok)})
