"""Envelope: a message plus the routing information that travels with it through the graph.

Contract (as MegFlow): ``Envelope.pack(msg, info=None)`` builds one, ``info`` may be a dict with
``partial_id``, ``from_addr``, ``to_addr``, ``tag``, ``extra_data`` (and the internal
``transfer_addr`` and ``origin``: the HTTP server request it answers, kept by ``repack``, so a
node that raises on it fails that request instead of ending); ``envelope.repack(msg)`` returns a new envelope with the same info. Sending an
envelope moves it: any later use of the sent object raises :class:`EnvelopeMoved`.

The info fields, as the built-in nodes set and read them:

* ``from_addr``: where the message comes from: the stream id for VideoServer / VideoInput frames
  (0, 1, 2, ... in start order), the address of a DynDemux instance; results routed back through a
  shared node keep it.
* ``partial_id``: the sequence number: the frame index within its stream (from 0, continuing across
  reconnects), ImageServer's request counter, ImageInput's file number. Reorder sorts by it.
* ``to_addr``: where it should go: Demux and DynDemux route by it (DynDemux: one subgraph instance
  per value; an empty envelope to it closes that instance).
* ``tag``: which subgraph type a DynDemux of type ``"A|B"`` creates for a new address.
* ``extra_data``: ImageServer's ``{extra_data}`` URL part, ImageInput's file stem (also in ``msg``).

Frames: a received ``msg['data']`` array is a writable view of shared memory. Changing it in place
(drawing boxes, as MegFlow plugins do) is allowed and costs no copy; sending it on sends that same
memory. Every node that holds the same frame sees the change, so a node after a ``Bcast``, or a
node next to another reader of the frame, should draw on ``frame.copy()`` instead.
"""

from __future__ import annotations

from typing import Any
from .errors import EnvelopeMoved

_FIELDS = ("msg", "partial_id", "from_addr", "to_addr", "tag", "extra_data", "transfer_addr", "origin")
_INFO = _FIELDS[1:]


class Envelope:
    """A message (``msg``) and its info. Plain attributes: read and assign them freely."""

    __slots__ = _FIELDS

    def __init__(self, msg: Any = None, partial_id=None, from_addr=None, to_addr=None, tag=None,
                 extra_data=None, transfer_addr=None, origin=None):
        self.msg = msg
        self.partial_id = partial_id
        self.from_addr = from_addr
        self.to_addr = to_addr
        self.tag = tag
        self.extra_data = extra_data
        self.transfer_addr = transfer_addr
        self.origin = origin

    @staticmethod
    def pack(msg: Any, info: dict | None = None) -> "Envelope":
        """A new envelope around ``msg``; unknown keys in ``info`` are an error."""
        env = Envelope(msg)
        if info:
            for key, value in info.items():
                if key not in _INFO:
                    raise KeyError(f"unknown envelope info {key!r} (known: {', '.join(_INFO)})")
                setattr(env, key, value)
        return env

    def repack(self, msg: Any) -> "Envelope":
        """A new envelope carrying ``msg`` with this envelope's info (routing is kept)."""
        return Envelope(msg, self.partial_id, self.from_addr, self.to_addr, self.tag, self.extra_data,
                        self.transfer_addr, self.origin)

    def info(self) -> dict:
        """The info fields as a dict (without ``msg``)."""
        return {k: getattr(self, k) for k in _INFO}

    def is_empty(self) -> bool:
        """True for ``Envelope.pack(None)``: DynDemux treats it as the end of an address's stream."""
        return self.msg is None

    def to_tuple(self) -> tuple:
        return (self.msg, self.partial_id, self.from_addr, self.to_addr, self.tag, self.extra_data,
                self.transfer_addr, self.origin)

    @staticmethod
    def from_tuple(t: tuple) -> "Envelope":
        return Envelope(*t)

    def __repr__(self) -> str:
        return f"Envelope(msg={self.msg!r}, partial_id={self.partial_id!r}, to_addr={self.to_addr!r})"


def _moved(name):
    def fail(self, *args):
        raise EnvelopeMoved(f"envelope used after send (field {name!r}): repack or copy before sending")
    return property(fail, fail)


class MovedEnvelope(Envelope):
    """What a sent envelope becomes: every field access raises :class:`EnvelopeMoved`."""

    __slots__ = ()


for _name in _FIELDS:
    setattr(MovedEnvelope, _name, _moved(_name))
for _name in ("repack", "info", "to_tuple", "is_empty"):
    setattr(MovedEnvelope, _name, _moved(_name).fget)


def mark_moved(env: Envelope) -> None:
    """Make ``env`` unusable after it was sent (same slot layout, so the class swap is allowed)."""
    object.__setattr__(env, "__class__", MovedEnvelope)
