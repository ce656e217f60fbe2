"""Live video in the browser, served by a VideoServer's own front door (no media server, no ffmpeg binary).

The path of a rendered frame:

1. A stream's ``Visualize`` node (:mod:`megflow_mp.nodes.visualize`, a node of the stream's
   subgraph) receives the frame the app drew its results on and sends ``{VIEW_KEY: frame}`` out of
   the subgraph, on the route every stream's results already take back to the VideoServer that
   started it. The frame is a shared-memory array: it crosses the process boundary by reference
   (a few hundred bytes of metadata over the engine's socket), never copied and never pickled.
2. The VideoServer's collector of that stream hands it to the stream's :class:`.channel.LiveChannel`
   (:func:`view_frame` recognises it): dropped at once when nobody watches, otherwise encoded on the
   channel's encoder thread (H.264, :mod:`.encoder`) and cut into one fMP4 fragment per frame
   (:mod:`.fmp4`), each shared by all viewers of the stream.
3. :mod:`.routes` serves ``/view`` (the running streams), ``/view/{id}`` (a page with a ``<video>``
   fed by Media Source Extensions, :file:`assets/player.js`) and ``/view/{id}/live.mp4`` (the
   fragments, as they come, over one HTTP response per viewer).

Encoding happens where the viewers are known, so the demand (start and stop encoding, an IDR for a
new viewer, dropping a slow viewer) needs no message back into the graph.
"""

from __future__ import annotations

VIEW_KEY = "megflow_mp.view"  # the key of a rendered frame on its way from Visualize to the front door


def view_message(frame, encode: dict | None = None) -> dict:
    """The message the Visualize node sends: the frame, and the encoder options it asks for."""
    return {VIEW_KEY: frame, "encode": encode or {}}


def view_frame(msg):
    """``(frame, encode options)`` if ``msg`` is a Visualize node's message, else None."""
    if type(msg) is dict and VIEW_KEY in msg:
        return msg[VIEW_KEY], msg.get("encode") or {}
    return None
