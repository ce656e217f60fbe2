"""A video source that decodes files and live streams with PyAV on its own thread.

The engine runs node code on a cooperative hub (see :mod:`megflow_mp.runtime.hub`), so decoding never
runs there: :class:`StreamReader` owns one daemon decode thread and hands out :class:`Frame` objects
(BGR ``uint8`` arrays) through a bounded queue; the consumer calls :meth:`StreamReader.get` from one
thread (a node's worker thread, or the hub with ``timeout=0``).

Contracts:

* **Files** are opened in :meth:`~StreamReader.start`, which raises :class:`ReaderError` at once when
  that fails (state ``"error"``). The file is decoded to its end, then the state is ``"finished"``.
* **Live URLs** (rtsp, rtsps, rtmp, http(s), udp, tcp, srt) are opened on the decode thread. EOF or a
  read/open error is a disconnect: state ``"reconnecting"``, a new attempt after a capped exponential
  backoff (reset once a connection produced a frame), until ``max_reconnects`` attempts have failed
  (state ``"error"``, "gave up ..."). ``reconnect=True`` on a file reopens it at EOF (a loop).
* **Policy** ``"block"`` (files' default) makes the decode thread wait while the queue is full;
  ``"drop_oldest"`` (live default) drops the oldest queued frame and counts it in ``frames_dropped``.
* **Corrupt data** never ends a stream: a packet the decoder refuses (``InvalidDataError``) and a
  frame it marks corrupt (decode errors concealed, references missing) are skipped and counted in
  ``corrupt``; decoding goes on with the next packet. Skipped frames take no ``index``.
* Frames are decoded into arrays made by ``alloc(shape, dtype)`` (``np.empty`` by default; the engine
  passes its shared-memory arena's, so a frame is written once and sent on without a copy).
* ``drain(waker)`` is the non-blocking way (a hub task's): every queued frame at once, or ``[]`` and
  ``waker()`` called once when there is more: at the next frame of a live or paced (``realtime``)
  source; for a file decoded at full speed when about ``WAKE_BYTES`` of frames (at most half the
  queue, at least one frame) are ready: fewer thread wake-ups for small frames, no extra frames in
  flight for large ones; the decode thread never blocks before that; at the end in every case.
* ``get`` returns frames in order, then ``None`` for good (file end, stop, error, gave up); it returns
  :data:`EMPTY` when ``timeout`` passed first. Frame ``index`` counts across reconnects.
* ``on_state(state, detail)`` is called on every state change (and on each failed reconnect attempt,
  with a new detail), from the decode thread, except ``"stopped"`` which comes from the thread calling
  :meth:`~StreamReader.stop`. It runs under the reader's state lock: keep it cheap, never block.
  ``"finished"``, ``"stopped"`` and ``"error"`` are final; nothing is reported after them.
* **Secrets**: only ``av.open`` sees the real URL. Every state detail, :class:`ReaderError`, log
  line and thread name shows ``shown_url`` (:func:`.redact.redact_url`), and every error text is
  scrubbed of the URL's secrets (:func:`.redact.scrub`: FFmpeg's messages quote the URL).
* :meth:`~StreamReader.stop` never hangs: it joins the thread for at most
  ``max(open_timeout, read_timeout) + 1`` s. A thread still stuck in ``av.open`` exits on its own when
  PyAV's timeout fires (every blocking PyAV call here is bounded by those timeouts).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from ..errors import ReaderError
from . import swscale
from .redact import redact_url, scrub
from .source import ReaderOptions, is_live

log = logging.getLogger(__name__)

WAKE_BYTES = 2 << 20  # a file's frames are handed to a drain() consumer in batches of about this size
FINAL_STATES = frozenset({"finished", "stopped", "error"})


class _Empty:
    def __repr__(self) -> str:
        return "EMPTY"

    def __bool__(self) -> bool:
        return False


EMPTY = _Empty()
"""Returned by :meth:`StreamReader.get` when its timeout passed before a frame or the end."""


@dataclass
class Frame:
    data: np.ndarray  # HxWx3 uint8 BGR, C-contiguous
    index: int  # 0, 1, 2, ... over the whole stream, continuing across reconnects
    pts: float | None  # seconds; None when the stream gave none (first RTSP frame)
    decoded_at: float = 0.0  # time.monotonic() when the frame was decoded (its age at a result: latency)


def describe(exc: BaseException, url: str) -> str:
    """A one-line reason for a failed open or read of ``url``, with no secret of ``url`` in it."""
    shown = redact_url(url)
    if isinstance(exc, ReaderError):
        return scrub(exc.reason, url)
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: {shown}"
    if isinstance(exc, FileNotFoundError):
        if "://" not in url and ("//" in url or ":" in url.split("/", 1)[0]):  # rtsp//host, rtsp:/host, ...
            return f"no such file, nor a well-formed URL (scheme://host/...): {shown}"
        return f"no such file: {shown}"
    if isinstance(exc, (av.error.ExitError, TimeoutError)):
        return f"timed out: {shown}"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"{scrub(text, url)}: {shown}"


class BGRConverter:
    """Converts decoded frames to ``HxWx3 uint8`` BGR arrays made by ``alloc(shape, dtype)``.

    One converter per stream (not thread-safe), converting on the calling thread with one swscale
    context kept across frames (remade only when the size, pixel format or colours change; PyAV's
    ``to_ndarray`` builds and frees one, with its slice threads, for every frame). The result is
    what ``frame.to_ndarray(format="bgr24")`` gives, bit for bit, in the C-contiguous array ``alloc``
    made (a shared-memory block when the engine passes its arena's): libswscale writes straight
    into it (:mod:`megflow_mp.video.swscale`); a format that path does not handle, or a PyAV without
    reachable libraries, is converted by PyAV's reformatter and copied in once.
    """

    def __init__(self, alloc=np.empty):
        self.alloc = alloc
        lib = swscale.library()
        self._direct = swscale.DirectScaler(lib) if lib is not None else None
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        h, w = frame.height, frame.width
        out = self.alloc((h, w, 3), np.uint8)
        if self._direct is not None and self._direct.convert(frame, out):
            return out
        if frame.format.name != "bgr24":
            frame = self._reformatter.reformat(frame, format="bgr24", threads=1)
        plane = frame.planes[0]
        src = np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, : w * 3].reshape(h, w, 3)
        np.copyto(out, src)
        return out


class StreamReader:
    """Decodes ``url`` (a file path or a live URL) on a background thread; see the module docstring."""

    def __init__(self, url: str, options: ReaderOptions = ReaderOptions(), on_state=None, alloc=None):
        if options.policy not in (None, "block", "drop_oldest"):
            raise ValueError(f"unknown queue policy {options.policy!r} (block, drop_oldest)")
        if options.queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.url, self.options, self.on_state = url, options, on_state
        self.shown_url = redact_url(url)  # what every message shows; the real url is only opened
        self.alloc = alloc or np.empty  # (shape, dtype) -> the C-contiguous array a frame is decoded into
        self.live = is_live(url)
        self.reconnect = self.live if options.reconnect is None else options.reconnect
        self.policy = options.policy or ("drop_oldest" if self.live else "block")
        self.state: str = "starting"
        self.error: str | None = None
        self.frames_decoded = self.frames_dropped = self.reconnects = 0
        self.corrupt = 0  # packets the decoder refused and frames it marked corrupt: skipped
        self.decode_seconds = 0.0  # decoding and BGR conversion (the decode thread)
        self._queue: deque = deque()
        self._cond = threading.Condition()
        self._ended = False  # no more frames will be queued
        self._stop = threading.Event()
        self._state_lock = threading.RLock()
        self._stamps: deque = deque()  # monotonic times of recent decoded frames (for fps)
        self._thread: threading.Thread | None = None
        self._waker = None  # called once when frames or the end arrive after drain() found nothing
        # frames per wake-up of a drain() consumer; set by the first frame (see _batch)
        self._wake_at = 1 if self.live or options.realtime else None

    # -- consumer side -------------------------------------------------------------------------
    def start(self) -> None:
        """Start decoding. Raises :class:`ReaderError` at once when a file cannot be opened."""
        if self._thread is not None:
            raise RuntimeError("StreamReader.start() called twice")
        container = None
        if not self.live:
            try:
                container = self._open()
            except Exception as exc:  # noqa: BLE001 - reported as ReaderError
                reason = describe(exc, self.url)
                self._set_state("error", reason)
                self._end()
                raise ReaderError(self.shown_url, reason) from None
        self._thread = threading.Thread(
            target=self._run, args=(container,), name=f"video-reader:{self.shown_url}", daemon=True)
        self._thread.start()

    def get(self, timeout: float | None = None):
        """The next :class:`Frame`; ``None`` at the end; :data:`EMPTY` when ``timeout`` passed first."""
        if self._thread is None and not self._ended:
            raise RuntimeError("StreamReader.get() before start()")
        with self._cond:
            if not self._cond.wait_for(lambda: self._queue or self._ended, timeout):
                return EMPTY
            if self._queue:
                frame = self._queue.popleft()
                self._cond.notify_all()  # room for a blocked decode thread
                return frame
            return None

    def drain(self, waker):
        """Every queued frame, without blocking (a list, maybe empty); ``None`` at the end.

        For a consumer that must not block (a cooperative task): when the list is empty,
        ``waker()`` is called once, from another thread, as soon as a frame or the end arrives.
        """
        if self._thread is None and not self._ended:
            raise RuntimeError("StreamReader.drain() before start()")
        with self._cond:
            if self._queue:
                frames = list(self._queue)
                self._queue.clear()
                self._cond.notify_all()  # room for a blocked decode thread
                return frames
            if self._ended:
                return None
            self._waker = waker
            return []

    def _wake(self) -> None:
        """Under ``_cond``: call the waker drain() left, once."""
        waker, self._waker = self._waker, None
        if waker is not None:
            waker()

    def stop(self, wait: bool = True) -> None:
        """Stop decoding; ``get`` then returns what is queued, then ``None``. Bounded join of the
        decode thread unless ``wait`` is False (a caller that must not block: it ends on its own)."""
        self._stop.set()
        self._set_state("stopped", None)
        self._end()
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(max(self.options.open_timeout, self.options.read_timeout) + 1.0)
            if thread.is_alive():
                log.warning("video reader %s: decode thread still blocked in PyAV; left to exit", self.shown_url)

    @property
    def fps(self) -> float:
        """Frames decoded per second over the last second; 0.0 when fewer than two were."""
        now = time.monotonic()
        with self._cond:
            recent = [t for t in self._stamps if t > now - 1.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(now - recent[0], 1e-6)

    # -- decode thread -------------------------------------------------------------------------
    def _set_state(self, state: str, detail: str | None) -> None:
        with self._state_lock:
            if self.state in FINAL_STATES:
                return
            if state == "error":
                self.error = detail
            self.state = state
            if self.on_state is not None:
                try:
                    self.on_state(state, detail)
                except Exception:  # noqa: BLE001 - a callback must not kill the decode thread
                    log.exception("video reader %s: on_state callback failed", self.shown_url)

    def _end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()
            self._wake()

    def _open(self):
        o = self.options
        options = {}
        scheme = urlsplit(self.url).scheme.lower()
        if self.live:
            options = {"analyzeduration": "200000", "probesize": "32768",
                       "timeout": str(int(o.open_timeout * 1_000_000))}
            if scheme in ("rtsp", "rtsps"):
                options["rtsp_transport"] = o.transport
        container = av.open(self.url, options=options, timeout=(o.open_timeout, o.read_timeout))
        if not container.streams.video:
            container.close()
            raise ReaderError(self.shown_url, f"no video stream: {self.shown_url}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = o.threads
        return container

    def _run(self, container) -> None:
        delay = self.options.backoff_initial
        try:
            while not self._stop.is_set():
                if container is None:
                    try:
                        container = self._open()
                    except Exception as exc:  # noqa: BLE001 - any failed open is a disconnect
                        reason = describe(exc, self.url)
                        if not self.reconnect:
                            self._set_state("error", reason)
                            return
                        if not self._backoff(reason, delay):
                            return
                        delay = min(delay * 2, self.options.backoff_max)
                        continue
                self._set_state("running", self.shown_url)
                error, decoded = None, self.frames_decoded
                try:
                    self._decode(container)
                except Exception as exc:  # noqa: BLE001 - a read error ends this connection
                    error = describe(exc, self.url)
                finally:
                    container.close()
                    container = None
                if self._stop.is_set():
                    return
                if not self.reconnect:
                    self._set_state("error" if error else "finished", error)
                    return
                if self.frames_decoded > decoded:
                    delay = self.options.backoff_initial
                if not self._backoff(error or f"end of stream: {self.shown_url}", delay):
                    return
                delay = min(delay * 2, self.options.backoff_max)
        except Exception as exc:  # noqa: BLE001 - never die silently
            why = scrub(f"{type(exc).__name__}: {exc}", self.url)
            log.error("video reader %s failed: %s", self.shown_url, scrub(traceback.format_exc(), self.url).rstrip())
            self._set_state("error", why)
        finally:
            if container is not None:
                container.close()
            self._end()

    def _backoff(self, reason: str, delay: float) -> bool:
        """Report the disconnect, wait ``delay`` (or until stop); False when giving up or stopped."""
        limit = self.options.max_reconnects
        if limit is not None and self.reconnects >= limit:
            self._set_state("error", f"gave up after {self.reconnects} reconnects: {reason}")
            return False
        self._set_state("reconnecting", f"{reason} (retry in {delay:.2f}s)")
        if self._stop.wait(delay):
            return False
        self.reconnects += 1
        return True

    def _decode(self, container) -> None:
        """Queue every frame of the container's first video stream until EOF or stop."""
        stream = container.streams.video[0]
        pace = self.options.realtime and not self.live
        origin = None  # (monotonic, pts) of the first paced frame
        to_bgr = BGRConverter(self.alloc)
        for packet in container.demux(stream):
            t0 = time.perf_counter()
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                self.decode_seconds += time.perf_counter() - t0
                self.corrupt += 1  # a damaged packet: skipped, the next one may decode
                continue
            self.decode_seconds += time.perf_counter() - t0
            for frame in frames:
                if self._stop.is_set():
                    return
                if frame.is_corrupt:  # concealed decode errors or missing references: not a picture to use
                    self.corrupt += 1
                    continue
                pts = frame.time
                if pace and pts is not None:
                    if origin is None:
                        origin = (time.monotonic(), pts)
                    wait = origin[0] + (pts - origin[1]) - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        return
                t0 = time.perf_counter()
                data = to_bgr(frame)
                self.decode_seconds += time.perf_counter() - t0
                if not self._put(Frame(data, self.frames_decoded, pts, time.monotonic())):
                    return

    def _batch(self, frame_bytes: int) -> int:
        """Frames of a file decoded at full speed per consumer wake-up: small frames are handed over
        in batches of up to half the queue (a wake-up costs more than decoding a 360p frame), large
        ones (>= WAKE_BYTES) one by one (fewer frames in flight: less memory to touch)."""
        return max(1, min(self.options.queue_size // 2, WAKE_BYTES // max(frame_bytes, 1)))

    def _put(self, frame: Frame) -> bool:
        with self._cond:
            if self._ended:  # stopped: nothing may follow the None that get() may have returned
                return False
            now = time.monotonic()
            self._stamps.append(now)
            while self._stamps and self._stamps[0] <= now - 1.0:
                self._stamps.popleft()
            self.frames_decoded += 1
            if self.policy == "block":
                self._cond.wait_for(
                    lambda: len(self._queue) < self.options.queue_size or self._stop.is_set())
                if self._stop.is_set():
                    return False
            elif len(self._queue) >= self.options.queue_size:
                self._queue.popleft()
                self.frames_dropped += 1
            self._queue.append(frame)
            self._cond.notify_all()
            if self._wake_at is None:
                self._wake_at = self._batch(frame.data.nbytes)
            if len(self._queue) >= self._wake_at:
                self._wake()
            return True
