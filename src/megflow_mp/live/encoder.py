"""H.264 encoding of BGR frames for live viewing: libx264 through PyAV, tuned for latency.

:class:`H264Encoder` takes BGR frames of one size (even width and height; :func:`even_size` says
what a frame is cropped to) and returns :class:`AccessUnit` objects: AVCC sample bytes ready for
:func:`.fmp4.media_segment`, the keyframe flag, and on keyframes the SPS and PPS. Settings: preset
``ultrafast`` and tune ``zerolatency`` (no B-frames, no lookahead: one frame in, one access unit
out), constrained baseline profile, CRF rate control with an optional ``max_kbps`` cap, a keyframe
at least every ``keyint`` frames and whenever :meth:`H264Encoder.encode` is asked for one (an IDR,
where a new viewer can start). BGR becomes I420 with OpenCV (one SIMD pass, the GIL released);
PyAV encodes with the GIL released as well. Not thread-safe: one thread per encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

NAL_SPS, NAL_PPS, NAL_AUD, NAL_SEI = 7, 8, 9, 6


@dataclass(frozen=True)
class AccessUnit:
    """One encoded frame: ``sample`` is AVCC (4-byte length before each NAL unit); ``sps``/``pps``
    are set on keyframes (the parameter sets an init segment needs)."""

    sample: bytes
    keyframe: bool
    sps: bytes | None = None
    pps: bytes | None = None


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes ``00 00 01`` or ``00 00 00 01``)."""
    units, start = [], data.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt < 0 else nxt
        unit = data[begin:end]
        if nxt >= 0:
            unit = unit.rstrip(b"\x00")  # the leading zero of a 4-byte start code (and trailing zeros)
        if unit:
            units.append(unit)
        start = nxt
    return units


def to_access_unit(annexb: bytes, keyframe: bool) -> AccessUnit:
    """Repack one encoded packet: parameter sets are taken out, AUD/SEI dropped, the rest length-prefixed."""
    sps = pps = None
    parts = []
    for unit in split_annexb(annexb):
        kind = unit[0] & 0x1F
        if kind == NAL_SPS:
            sps = unit
        elif kind == NAL_PPS:
            pps = unit
        elif kind not in (NAL_AUD, NAL_SEI):
            parts.append(len(unit).to_bytes(4, "big") + unit)
    return AccessUnit(b"".join(parts), keyframe, sps, pps)


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size a ``width`` x ``height`` frame is encoded at (4:2:0 needs even sides; the last odd
    column/row is cropped)."""
    return width - width % 2, height - height % 2


class H264Encoder:
    """Encodes BGR frames of ``width`` x ``height`` (both even) to access units.

    ``crf`` (quality, 23), ``max_kbps`` (a VBV cap, None for none), ``keyint`` (most frames between
    keyframes, 120), ``preset`` ("ultrafast"), ``threads`` (0: libx264 decides). Raises ValueError
    for a size it cannot encode.
    """

    def __init__(self, width: int, height: int, crf: float = 23, max_kbps: int | None = None, keyint: int = 120,
                 preset: str = "ultrafast", threads: int = 0):
        import av

        if width < 16 or height < 16 or width % 2 or height % 2:
            raise ValueError(f"cannot encode {width}x{height}: sides must be even and at least 16")
        self.width, self.height = width, height
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = Fraction(1, 30)  # x264 rate control assumes 30 fps; the MP4 carries real times
        ctx.framerate = Fraction(30, 1)
        ctx.gop_size = int(keyint)
        ctx.thread_count = int(threads)
        options = {"preset": preset, "tune": "zerolatency", "profile": "baseline", "forced-idr": "1",
                   "crf": str(crf), "repeat-headers": "1",
                   # OpenCV's I420 is BT.601, limited range: say so, or browsers assume BT.709 for HD sizes
                   "x264-params": "colormatrix=smpte170m:colorprim=smpte170m:transfer=smpte170m:range=tv"}
        if max_kbps:
            options.update({"maxrate": f"{int(max_kbps)}k", "bufsize": f"{int(max_kbps)}k"})
        ctx.options = options
        ctx.open()
        self.ctx = ctx
        self.frames = 0
        self._key = av.video.frame.PictureType.I
        self._frame_cls = av.VideoFrame

    def encode(self, bgr: np.ndarray, keyframe: bool = False) -> list[AccessUnit]:
        """Encode one frame (``HxWx3`` uint8 BGR, at least the encoder's size: larger is cropped);
        ``keyframe`` forces an IDR. Returns the access units libx264 gave back (one, with zerolatency)."""
        if bgr.shape[0] != self.height or bgr.shape[1] != self.width:
            bgr = bgr[: self.height, : self.width]
        import cv2  # loaded by the process that encodes only

        i420 = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV_I420)
        frame = self._frame_cls.from_ndarray(i420, format="yuv420p")
        frame.pts = self.frames
        if keyframe:
            frame.pict_type = self._key
        self.frames += 1
        return [to_access_unit(bytes(p), bool(p.is_keyframe)) for p in self.ctx.encode(frame)]

    def close(self) -> None:
        """Free the codec (queued frames are discarded: a live stream has nobody to give them to)."""
        self.ctx = None
