"""One stream's live view on the front door's side: encode once while watched, fan out to viewers.

A :class:`LiveChannel` belongs to one video stream. Its producer (the VideoServer's hub, which
receives the Visualize node's frames) calls :meth:`LiveChannel.offer` for every rendered frame;
HTTP handlers on the front door's event loop add and remove :class:`Viewer` objects.

Contracts
---------
* No viewer, no work: :meth:`offer` drops the frame (a counter, nothing else) and no encoder exists.
  The first viewer starts an encoder thread; the last one leaving ends it and frees the encoder.
* Encoding never slows the pipeline: :meth:`offer` never blocks on the encoder. It keeps only the
  newest frame not yet encoded (an older one is replaced and counted as ``skipped``).
* One encoding per stream, shared by every viewer: each access unit becomes one fMP4 fragment
  (``moof`` + ``mdat``), handed to every viewer's loop once.
* A viewer starts at a keyframe, after the init segment; a new viewer asks for an IDR (at most two a
  second), so it starts at once. A viewer whose queue grows past ``max_queue`` bytes (a slow
  network or a stalled tab) loses what was queued and resumes at the next keyframe (asking for one);
  after ``max_skips`` such skips it is dropped. A viewer that went away is removed by its handler.
* The media timeline follows the frames' arrival times (90 kHz, contiguous: each fragment lasts until
  the next frame arrived), so any frame rate, steady or not, plays at its own pace.
* :meth:`close` (the stream ended) ends every viewer's response after what was queued.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque

import numpy as np

from .encoder import H264Encoder, even_size
from .fmp4 import TIMESCALE, codec_string, init_segment, media_segment

log = logging.getLogger("megflow_mp")
KEYFRAME_GAP = 0.5  # seconds: least time between two requested keyframes


class Viewer:
    """One HTTP response streaming a channel; every method runs on the viewer's event loop."""

    def __init__(self, channel: "LiveChannel", loop: asyncio.AbstractEventLoop):
        self.channel, self.loop = channel, loop
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.wake = asyncio.Event()
        self.ready: asyncio.Future = loop.create_future()  # the codecs string, once the first keyframe came
        self.waiting_key = True
        self.sent_init: bytes | None = None
        self.skips = 0
        self.sent = 0
        self.closed = False

    def offer(self, init: bytes | None, codecs: str | None, segment: bytes, keyframe: bool) -> None:
        if self.closed:
            return
        if self.waiting_key:
            if not keyframe:
                return
            self.waiting_key = False
        if keyframe and init != self.sent_init:
            self._put(init)
            self.sent_init = init
            if not self.ready.done():
                self.ready.set_result(codecs)
        if self.queued + len(segment) > self.channel.max_queue:
            self.skip()
            return
        self._put(segment)

    def skip(self) -> None:
        """Too far behind: forget what is queued and resume at the next keyframe (or give up)."""
        self.queue.clear()
        self.queued = 0
        self.sent_init = None
        self.waiting_key = True
        self.skips += 1
        channel = self.channel
        if self.skips > channel.max_skips:
            log.info("live view of %s: a viewer fell behind %d times and is dropped", channel.name, self.skips)
            self.close()
            channel.drop_viewer(self)
        else:
            channel.request_keyframe(skipped=True)

    def _put(self, data: bytes) -> None:
        self.queue.append(data)
        self.queued += len(data)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()
        if not self.ready.done():
            self.ready.set_result(None)

    async def chunks(self):
        """What to send, as it comes: the init segment, then fragments; ends when closed."""
        while True:
            if not self.queue:
                if self.closed:
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            data = b"".join(self.queue)
            self.queue.clear()
            self.queued = 0
            self.sent += len(data)
            yield data


def _deliver(viewers, init, codecs, segment, keyframe) -> None:
    for viewer in viewers:
        viewer.offer(init, codecs, segment, keyframe)


class LiveChannel:
    """The live view of one stream (see the module docstring). ``encode`` holds
    :class:`~.encoder.H264Encoder` options (``crf``, ``max_kbps``, ``keyint``, ``preset``, ``threads``);
    a frame may bring its own (the Visualize node's args), which apply from the next encoder on."""

    def __init__(self, name: str, encode: dict | None = None, max_queue: int = 8 << 20, max_skips: int = 10):
        self.name = name
        self.encode = dict(encode or {})
        self.max_queue, self.max_skips = int(max_queue), int(max_skips)
        self.cond = threading.Condition()
        self.viewers: set[Viewer] = set()
        self.slot: tuple[np.ndarray, float] | None = None
        self.thread: threading.Thread | None = None
        self.key_wanted = False
        self.ended = False
        self.codecs: str | None = None
        self.size: tuple[int, int] | None = None
        self.frames_in = self.frames_encoded = self.skipped = self.keyframes = self.bytes_out = 0
        self.viewer_skips = self.viewers_dropped = 0

    # -- producer (any thread) -------------------------------------------------------------------------
    def offer(self, frame: np.ndarray, encode: dict | None = None) -> None:
        """A rendered BGR frame (``HxWx3`` uint8) of the stream; never blocks. ``encode``: encoder
        options for the next encoder, and ``viewer_queue`` (bytes a viewer may lag) for new viewers."""
        with self.cond:
            self.frames_in += 1
            if encode:
                encode = dict(encode)
                self.max_queue = int(encode.pop("viewer_queue", self.max_queue))
                self.encode = encode
            if not self.viewers or self.ended:
                return
            if self.slot is not None:
                self.skipped += 1
            self.slot = (frame, time.monotonic())
            self.cond.notify()

    def close(self) -> None:
        """The stream ended: the encoder stops, every viewer gets what was queued, then the end."""
        with self.cond:
            self.ended = True
            self.slot = None
            viewers = list(self.viewers)
            self.cond.notify()
        for viewer in viewers:
            viewer.loop.call_soon_threadsafe(viewer.close)

    # -- viewers (event-loop thread) -----------------------------------------------------------------
    def add_viewer(self) -> Viewer:
        """A new viewer on the running loop; it starts at the next keyframe (one is requested)."""
        viewer = Viewer(self, asyncio.get_running_loop())
        with self.cond:
            if self.ended:
                viewer.close()
                return viewer
            self.viewers.add(viewer)
            self.key_wanted = True
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name=f"live:{self.name}", daemon=True)
                self.thread.start()
        return viewer

    def remove_viewer(self, viewer: Viewer) -> None:
        viewer.close()
        with self.cond:
            self.viewers.discard(viewer)
            self.cond.notify()

    def request_keyframe(self, skipped: bool = False) -> None:
        with self.cond:
            self.key_wanted = True
            self.viewer_skips += skipped

    def drop_viewer(self, viewer: Viewer) -> None:
        """A viewer too slow to keep up is let go (its response ends)."""
        with self.cond:
            self.viewers_dropped += 1
            self.viewers.discard(viewer)
            self.cond.notify()

    def stats(self) -> dict:
        with self.cond:
            return {"viewers": len(self.viewers),
                    "queues": [{"queued": v.queued, "sent": v.sent, "skips": v.skips} for v in self.viewers],
                    "encoding": self.thread is not None, "codecs": self.codecs,
                    "size": list(self.size) if self.size else None, "frames_in": self.frames_in,
                    "frames_encoded": self.frames_encoded, "skipped": self.skipped, "keyframes": self.keyframes,
                    "bytes_out": self.bytes_out, "viewer_skips": self.viewer_skips,
                    "viewers_dropped": self.viewers_dropped, "ended": self.ended}

    # -- encoder thread --------------------------------------------------------------------------------
    def _next(self):
        """The next frame to encode, or None when nobody watches any more (the thread then ends)."""
        with self.cond:
            while self.slot is None and self.viewers and not self.ended:
                self.cond.wait()
            if not self.viewers or self.ended:
                self.thread = None
                return None
            frame, arrived = self.slot
            self.slot = None
            key = self.key_wanted
            self.key_wanted = False
            return frame, arrived, key, list(self.viewers), dict(self.encode)

    def _run(self) -> None:
        encoder, init, sequence, decode_time, last = None, None, 1, 0, None
        last_key = -KEYFRAME_GAP
        try:
            while (item := self._next()) is not None:
                frame, arrived, key, viewers, options = item
                width, height = even_size(frame.shape[1], frame.shape[0])
                if encoder is None or (encoder.width, encoder.height) != (width, height):
                    encoder, key = H264Encoder(width, height, **options), True
                if key and arrived - last_key < KEYFRAME_GAP and encoder.frames:
                    key = False
                    self.request_keyframe()  # granted a little later
                units = encoder.encode(frame, keyframe=key)
                del frame  # the shared-memory frame goes back to its owner now
                duration = round(TIMESCALE / 30) if last is None else max(1, round((arrived - last) * TIMESCALE))
                last = arrived
                for unit in units:
                    if unit.keyframe:
                        last_key = arrived
                        if unit.sps and unit.pps:
                            init = init_segment(width, height, unit.sps, unit.pps)
                            self.codecs, self.size = codec_string(unit.sps), (width, height)
                    if init is None:
                        continue
                    segment = media_segment(sequence, decode_time, duration, unit.sample, unit.keyframe)
                    sequence += 1
                    decode_time += duration
                    self._count(unit.keyframe, len(segment))
                    by_loop: dict = {}
                    for viewer in viewers:
                        by_loop.setdefault(viewer.loop, []).append(viewer)
                    for loop, group in by_loop.items():
                        loop.call_soon_threadsafe(_deliver, group, init, self.codecs, segment, unit.keyframe)
        except Exception as exc:  # noqa: BLE001 - the view ends with the reason; the stream goes on
            log.error("live view of %s: encoding failed: %s: %s", self.name, type(exc).__name__, exc)
            with self.cond:
                self.thread = None
                viewers, self.viewers = list(self.viewers), set()
            for viewer in viewers:
                viewer.loop.call_soon_threadsafe(viewer.close)
        finally:
            if encoder is not None:
                encoder.close()

    def _count(self, keyframe: bool, size: int) -> None:
        with self.cond:
            self.frames_encoded += 1
            self.keyframes += keyframe
            self.bytes_out += size
