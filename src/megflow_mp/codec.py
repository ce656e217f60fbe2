"""Message codec: pickle for metadata, shared-memory blocks (never pickled bytes) for numpy arrays.

Contracts
---------
* :meth:`Codec.encode` pickles any object (protocol 5). Every ``np.ndarray`` (exact type) at any
  depth, except object-dtype and empty arrays (pickled normally), travels as a reference to a
  shared-memory block of the sender's :class:`~megflow_mp.shm.Arena`:

  - an array that is (a view or slice of) an array this process received is sent by reference to
    the block it already lives in, whoever owns it: no copy, no allocation;
  - any other array is copied once (``np.copyto``) into a fresh block of this process, C-contiguous.

* A message without arrays is one plain C pickle (fast path, no Python call per object).
* A payload larger than ``MAX_INLINE`` (big ``bytes`` or strings) is itself put in a block, so
  socket messages stay small whatever a message holds.
* Reference counting: for each reference in the pickle (the pickle memo makes a repeated identical
  array object a single reference) ``encode`` adds ``copies`` references, then drops the holds of the
  blocks it allocated. ``copies`` is the number of destinations the same payload is delivered to;
  each destination must decode it exactly once (its views drop the references when they die). A
  payload that is never decoded leaks its blocks until the owner process exits; a sender that
  cannot deliver a copy releases it by decoding that copy itself and dropping the result.
* The returned key set names the segments the receiver must have mapped (``Arena.map_remote``)
  before :meth:`Codec.decode`; a reference to an unmapped segment raises ``LookupError``.
* Decoded arrays are writable views of the shared memory: a mutation is seen by every process that
  holds a view of the same block (MegFlow plugins draw on frames in place).
"""

from __future__ import annotations

import copyreg
import functools
import io
import pickle
import threading

import numpy as np

from .shm import Arena, Block

__all__ = ["Codec"]

_NO_KEYS = frozenset()
_MODULE = __name__.encode()  # in every payload that references shared memory (_rebuild, _unspill)


class _NeedsArena(RuntimeError):
    """Raised by a plain ``pickle.loads`` of a payload that references shared memory: only
    :meth:`Codec.decode` (which then unpickles it with its arena) can read such a payload."""


def _rebuild(owner: int, segment: int, offset: int, data_offset: int, shape, strides, dtype) -> np.ndarray:
    """What an array reference names in a pickle; only :meth:`Codec.decode` can resolve it (its
    unpickler substitutes a view in its own arena for this function)."""
    raise _NeedsArena("a megflow_mp shared-memory array can only be unpickled by Codec.decode")


class _Decoder(pickle.Unpickler):
    """Unpickles one payload of ``codec``: array references become views of its arena's blocks.

    The resolvers it hands out (``codec.resolvers``) refer to the codec, never to the unpickler:
    no reference cycle keeps the unpickler's memo, and so the decoded arrays, alive after ``load``.
    """

    def __init__(self, payload, codec: "Codec"):
        super().__init__(io.BytesIO(payload))
        self.resolvers = codec.resolvers

    def find_class(self, module: str, name: str):
        if module == __name__ and name in self.resolvers:
            return self.resolvers[name]
        return super().find_class(module, name)


def _view(arena: Arena, owner: int, segment: int, offset: int, data_offset: int, shape, strides, dtype):
    """An array reference of a payload resolved in ``arena`` (see ``Arena.view``)."""
    if not arena.knows((owner, segment)):
        raise LookupError(f"array in segment {segment} of process {owner} cannot be decoded in "
                          f"process {arena.index}: that segment is not mapped (map_remote its fd first)")
    return arena.view(Block(owner, segment, offset), data_offset, shape, strides, dtype)


class _Pickler(pickle.Pickler):
    def __init__(self, file, dispatch_table: dict):
        self.dispatch_table = dispatch_table  # must exist before the C Pickler's __init__ looks it up
        super().__init__(file, protocol=5)


def _holds_array(obj) -> bool:
    """Whether ``obj`` holds an ndarray within two levels of tuples, lists and dicts (an envelope's
    msg and its values). Such messages skip the fast path, which would serialise a non-contiguous
    array into the pickle before noticing it. Written flat: it runs for every message."""
    ndarray = np.ndarray
    kind = type(obj)
    if kind is ndarray:
        return True
    if kind is dict:
        obj = obj.values()
    elif kind is not tuple and kind is not list:
        return False
    for item in obj:
        kind = type(item)
        if kind is ndarray:
            return True
        if kind is dict:
            item = item.values()
        elif kind is not tuple and kind is not list:
            continue
        for sub in item:
            if type(sub) is ndarray:
                return True
    return False


MAX_INLINE = 256 << 10  # larger payloads travel in shared memory, never through the socket


class _Spill:
    """A payload too big for a socket message, carried as a shared-memory array."""

    __slots__ = ("data",)

    def __init__(self, data: np.ndarray):
        self.data = data

    def __reduce__(self):
        return _unspill, (self.data,)


def _unspill(data: np.ndarray):
    """What a spilled payload names in a pickle; resolved by the decoding codec."""
    raise _NeedsArena("a spilled megflow_mp payload can only be unpickled by Codec.decode")


class _Encoder:
    """A reusable pickler (building one per message costs more than pickling a small message)."""

    def __init__(self, arena: Arena):
        self.arena = arena
        self.refs: list[Block] = []  # one entry per array reference written into the pickle
        self.fresh: list[Block] = []  # blocks allocated by this call (their holds are ours to release)
        self.busy = False
        self.buf = io.BytesIO()
        table = copyreg.dispatch_table.copy()
        table[np.ndarray] = self.reduce_array  # exact type: only arrays pay a Python call
        self.pickler = _Pickler(self.buf, table)

    def reduce_array(self, arr: np.ndarray):
        arena = self.arena
        dtype = arr.dtype
        if dtype.hasobject or arr.size == 0:
            return arr.__reduce_ex__(5)  # numpy's own pickling; object elements pass through us
        found = arena.find(arr)
        if found is not None:  # received (or a view of received): send the same block
            block, data_offset = found
            strides = arr.strides
        else:  # copy ONCE into a fresh block; copyto handles any source layout in one pass
            block = arena.alloc(arr.nbytes)
            self.fresh.append(block)
            dst = np.frombuffer(arena.payload(block), dtype, count=arr.size).reshape(arr.shape)
            np.copyto(dst, arr, casting="no")
            data_offset, strides = 0, dst.strides
        self.refs.append(block)
        spec = dtype.str if dtype.names is None else dtype  # structured dtypes pickle as dtype
        return _rebuild, (block.owner, block.segment, block.offset, data_offset, arr.shape, strides, spec)

    def encode(self, obj, copies: int) -> tuple[bytes, frozenset]:
        arena, buf, refs, fresh = self.arena, self.buf, self.refs, self.fresh
        self.busy = True
        try:
            buf.seek(0)
            buf.truncate()
            self.pickler.clear_memo()
            try:
                self.pickler.dump(obj)
            except BaseException:
                for block in fresh:
                    arena.release_hold(block)
                raise
            # Order matters: add the receivers' references BEFORE dropping our holds (and while the
            # arrays we found are still alive via ``obj``), so no block can look free in between.
            for block in refs:
                arena.add_refs(block, copies)
            for block in fresh:
                arena.release_hold(block)
            keys = frozenset((b.owner, b.segment) for b in refs) if refs else frozenset()
            return buf.getvalue(), keys
        finally:
            self.pickler.clear_memo()  # the memo holds the message's objects: never keep them alive
            refs.clear()
            fresh.clear()
            self.busy = False


class Codec:
    """Encodes/decodes messages of one process, using that process's ``arena``."""

    def __init__(self, arena: Arena):
        self.arena = arena
        self._local = threading.local()  # one reusable pickler per thread
        # what the array and spill references of a payload resolve to when this codec decodes it
        self.resolvers = {"_rebuild": functools.partial(_view, arena),
                          "_unspill": lambda data: _Decoder(data, self).load()}

    def _pickler(self) -> "_Encoder":
        enc = getattr(self._local, "encoder", None)
        if enc is None:
            enc = self._local.encoder = _Encoder(self.arena)
        return enc

    def encode(self, obj, copies: int = 1, probe=...) -> tuple[bytes, frozenset]:
        """``(payload, keys)``: the pickled message and the ``(owner, segment)`` keys of every block it
        references. Adds ``copies`` references per array reference (see module docstring).

        Exceptions from pickling propagate; blocks allocated so far are released and no reference
        is added then. ``copies == 0`` (no destination) frees the blocks at once: such a payload must
        never be decoded. ``ValueError`` if ``copies < 0``. ``probe`` (default: ``obj``) is the part
        of ``obj`` where arrays are expected (an envelope's msg): only it is looked at before choosing
        the fast path, which is re-done the array way if an array turns out to be elsewhere.
        """
        if copies < 0:
            raise ValueError(f"copies must be >= 0, got {copies}")
        # Fast path: plain C pickling. No numpy global in the stream means the message holds no
        # array (an ndarray always pickles through a numpy function): that pickle is the payload.
        data = None
        if not _holds_array(obj if probe is ... else probe):
            data = pickle.dumps(obj, 5)
            if b"numpy" in data:  # an array deeper down (or a numpy scalar): pickle again, the array way
                data = None
        if data is None:
            data, keys = self._encode_arrays(obj, copies)
        else:
            keys = _NO_KEYS
        if len(data) > MAX_INLINE:  # big bytes/str in the message: the payload itself goes to shm
            spill, spill_keys = self._encode_arrays(_Spill(np.frombuffer(data, np.uint8)), copies)
            return spill, keys | spill_keys
        return data, keys

    def _encode_arrays(self, obj, copies: int) -> tuple[bytes, frozenset]:
        enc = self._pickler()
        if enc.busy:  # re-entered (an object's __reduce__ sent a message): use a fresh encoder
            enc = _Encoder(self.arena)
        return enc.encode(obj, copies)

    def decode(self, payload: bytes):
        """Unpickle a payload made by :meth:`encode` (in this or another process). Arrays come back as
        writable shared-memory views; each drops its reference when it (and all views of it) die.
        ``LookupError`` if a referenced segment is not mapped. A payload that references no shared
        memory (most small messages) is read by C ``pickle.loads`` alone; one that does (it names
        this module: a byte search tells) is read by an unpickler bound to this codec's arena (no
        process-wide state)."""
        if _MODULE not in payload:
            try:  # the C fast path (a reference to shared memory would stop it: _NeedsArena)
                return pickle.loads(payload)
            except _NeedsArena:
                pass
        return _Decoder(payload, self).load()
