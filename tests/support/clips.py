"""Real video clips for tests, encoded with PyAV from the photos in ``shared/data``.

Every clip's content, length and codec is known to the test that makes it:

    from tests.support.clips import make_clip, frame_count, read_index
    path = make_clip(tmp_path / "cat.mp4", frames=50)             # cat sliding left -> right
    path = make_clip(tmp_path / "cat.ts", container="mpegts")      # for the RTSP server
    path = make_clip(tmp_path / "exit.mp4", motion="exit", image="coco/000000007386.jpg")

Each frame shows its index twice: as text (cv2.putText, for people looking at a dump) and as a
16-bit bar code along the bottom edge that :func:`read_index` decodes from a decoded frame (BGR or
RGB ndarray), so tests can check frame order and drops after encoding and transport.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

DEFAULT_IMAGE = "images/cat_720p.jpg"

# bar code: BITS cells of CELL x CELL pixels, left to right = most to least significant bit,
# on a mid-grey strip at the bottom-left corner; white = 1, black = 0
BITS = 16
CELL = 16
_MARGIN = 4

_EXTENSIONS = {"mp4": ".mp4", "mpegts": ".ts", "matroska": ".mkv", "avi": ".avi"}
_CODECS = {"h264": "libx264", "hevc": "libx265", "h265": "libx265"}


def data_dir() -> Path:
    """``shared/data`` next to the repository, or under ``$MEGFLOW_MP_SHARED`` (the shared folder,
    or the data folder itself)."""
    here = Path(__file__).resolve().parents[3] / "shared" / "data"
    if here.is_dir():
        return here
    env = os.environ.get("MEGFLOW_MP_SHARED")
    if env:
        for cand in (Path(env) / "data", Path(env)):
            if (cand / "images").is_dir() or (cand / "coco").is_dir():
                return cand
    raise FileNotFoundError(f"test data not found at {here} and $MEGFLOW_MP_SHARED is {env!r}")


def load_image(image: str | os.PathLike | np.ndarray | None = None) -> np.ndarray:
    """A BGR uint8 image: an array as is, an absolute path, or a path relative to :func:`data_dir`."""
    if isinstance(image, np.ndarray):
        return image
    p = Path(image or DEFAULT_IMAGE)
    if not p.is_absolute():
        p = data_dir() / p
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {p}")
    return img


def _background(w: int, h: int) -> np.ndarray:
    """A fixed, smooth dark-blue-to-grey gradient (compresses well, never mistaken for a photo)."""
    ramp = np.linspace(40, 110, h, dtype=np.float32)[:, None]
    bg = np.empty((h, w, 3), np.uint8)
    bg[..., 0] = np.clip(ramp + 30, 0, 255).astype(np.uint8)
    bg[..., 1] = ramp.astype(np.uint8)
    bg[..., 2] = (ramp * 0.8).astype(np.uint8)
    return bg


def positions(frames: int, size: tuple[int, int], sprite: tuple[int, int], motion: str) -> list[int]:
    """x of the photo's left edge in each frame (y is centred)."""
    w, _ = size
    sw, _ = sprite
    if motion == "static":
        return [(w - sw) // 2] * frames
    if motion == "slide":           # fully inside, left edge -> right edge
        start, end = 0, w - sw
    elif motion == "exit":          # starts centred, ends fully outside on the right
        start, end = (w - sw) // 2, w
    elif motion == "enter":         # starts fully outside on the left, ends centred
        start, end = -sw, (w - sw) // 2
    else:
        raise ValueError(f"motion must be 'slide', 'static', 'exit' or 'enter', not {motion!r}")
    if frames == 1:
        return [start]
    return [round(start + (end - start) * i / (frames - 1)) for i in range(frames)]


def draw_index(frame: np.ndarray, index: int) -> None:
    """Write ``index`` onto ``frame`` (BGR, in place): text at the top-left, bar code at the bottom."""
    cv2.rectangle(frame, (0, 0), (118, 34), (0, 0, 0), -1)
    cv2.putText(frame, f"{index:05d}", (6, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
    h = frame.shape[0]
    y0 = h - CELL - 2 * _MARGIN
    frame[y0:h, : BITS * CELL + 2 * _MARGIN] = 128
    for b in range(BITS):
        bit = (index >> (BITS - 1 - b)) & 1
        x = _MARGIN + b * CELL
        frame[y0 + _MARGIN: y0 + _MARGIN + CELL, x: x + CELL] = 255 if bit else 0


def read_index(frame: np.ndarray) -> int:
    """The index :func:`draw_index` wrote, read back from a decoded frame (any 3-channel order,
    or a greyscale frame) of the same size as encoded."""
    img = frame if frame.ndim == 2 else frame.mean(axis=2)
    h = img.shape[0]
    y = h - _MARGIN - CELL // 2
    value = 0
    for b in range(BITS):
        x = _MARGIN + b * CELL + CELL // 2
        cell = img[y - CELL // 4: y + CELL // 4, x - CELL // 4: x + CELL // 4]
        value = (value << 1) | int(cell.mean() > 128)
    return value


def render_frames(frames: int = 50, size: tuple[int, int] = (640, 360), image=None, motion: str = "slide",
                  counter: bool = True):
    """Yield the clip's frames as BGR uint8 arrays (what :func:`make_clip` encodes)."""
    w, h = size
    if w % 2 or h % 2:
        raise ValueError(f"size must be even for yuv420p, got {size}")
    photo = load_image(image)
    ph, pw = photo.shape[:2]
    scale = min(0.6 * h / ph, 0.45 * w / pw)       # the photo takes ~60% of the height
    sw, sh = max(2, round(pw * scale)), max(2, round(ph * scale))
    sprite = cv2.resize(photo, (sw, sh), interpolation=cv2.INTER_AREA)
    bg = _background(w, h)
    y = (h - sh) // 2
    for i, x in enumerate(positions(frames, size, (sw, sh), motion)):
        frame = bg.copy()
        x0, x1 = max(x, 0), min(x + sw, w)
        if x1 > x0:
            frame[y: y + sh, x0:x1] = sprite[:, x0 - x: x1 - x]
        if counter:
            draw_index(frame, i)
        yield frame


def make_clip(path, frames: int = 50, size: tuple[int, int] = (640, 360), fps: int = 25, image=None,
              motion: str = "slide", codec: str = "h264", container: str | None = None, gop: int = 25,
              counter: bool = True) -> Path:
    """Encode a clip of ``frames`` frames: ``image`` (default the cat) on a gradient background,
    sliding left -> right (``motion="slide"``), standing still (``"static"``), sliding out of the
    frame on the right (``"exit"``, the last frame has no photo in it) or into it from the left
    (``"enter"``, the first frame has no photo in it, the last has it centred).

    ``container`` defaults from the suffix (.mp4, .ts, .mkv); ``container="mpegts"`` without a
    suffix writes ``.ts``. H.264 is written without B-frames, with a keyframe every ``gop`` frames
    and in-band parameter sets, yuv420p. Returns the path.
    """
    path = Path(path)
    if container is None:
        container = {".ts": "mpegts", ".mkv": "matroska", ".avi": "avi"}.get(path.suffix.lower(), "mp4")
    if not path.suffix:
        path = path.with_suffix(_EXTENSIONS.get(container, ".mp4"))
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(_CODECS.get(codec, codec), rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        stream.max_b_frames = 0
        if stream.codec_context.name == "libx264":
            stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "23",
                              "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1"}
        elif stream.codec_context.name == "libx265":
            stream.options = {"preset": "ultrafast", "x265-params": f"keyint={gop}:min-keyint={gop}:bframes=0:log-level=error"}
        for img in render_frames(frames, size, image, motion, counter):
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def frame_count(path) -> int:
    """Number of frames PyAV decodes from the first video stream of ``path``."""
    with av.open(str(path)) as f:
        return sum(1 for _ in f.decode(video=0))


def probe(path) -> dict:
    """``frames``, ``width``, ``height``, ``codec`` and ``indices`` (bar codes read back) of a clip."""
    with av.open(str(path)) as f:
        s = f.streams.video[0]
        info = {"width": s.codec_context.width, "height": s.codec_context.height, "codec": s.codec_context.name}
        indices = [read_index(fr.to_ndarray(format="gray")) for fr in f.decode(s)]
    info.update(frames=len(indices), indices=indices)
    return info
