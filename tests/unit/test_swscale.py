"""megflow_mp.video.swscale: libswscale writing straight into an array, bit-identical to PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from megflow_mp.video import swscale
from tests.support.clips import load_image

LIB = swscale.library()


def SCALER():  # noqa: N802 - reads as the class it stands for
    return swscale.DirectScaler(LIB)


def test_pyav_libraries_are_found_and_used_by_the_reader():
    from megflow_mp.video.reader import BGRConverter

    assert LIB is not None  # PyAV's wheels carry libswscale; the fast path is on
    assert isinstance(BGRConverter()._direct, swscale.DirectScaler)


PROBE = """
import sys
for name in sys.argv[1].split(","):
    __import__(name)
import av
from megflow_mp.video import swscale
lib = swscale.library()
print(lib.paths[0] if lib else None)
with open("/proc/self/maps") as f:
    print(sum("libswscale" in line and "opencv" in line for line in f) > 0)
"""


@pytest.mark.parametrize("first", ["av,cv2", "cv2,av"])
def test_pyavs_own_library_is_bound_whatever_was_loaded_first(first):
    """opencv-python carries another FFmpeg (libswscale 6); the binding must take PyAV's (9) in any
    import order, also when OpenCV's copy is mapped first."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", PROBE, first], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    path, opencv_mapped = r.stdout.split()
    assert path == LIB.paths[0] and "/av.libs/" in path
    if first.startswith("cv2"):
        assert opencv_mapped == "True"  # the other copy really was in the process


def test_a_library_of_another_version_is_refused_with_a_log_line(caplog):
    import cv2

    libs = Path(cv2.__file__).resolve().parents[1] / "opencv_python.libs"
    other = next(libs.glob("libswscale-*.so*"))  # opencv-python's own FFmpeg (libswscale 6)
    avutil = next(libs.glob("libavutil-*.so*"))
    with caplog.at_level("INFO", logger="megflow_mp.video.swscale"):
        assert swscale.bind(str(other), str(avutil)) is None
    assert "libswscale not usable" in caplog.text and "PyAV uses 9." in caplog.text


def test_dt_needed_is_read_from_the_extension():
    import av.video.reformatter

    names = swscale._needed(av.video.reformatter.__file__)
    assert any(n.startswith("libswscale") for n in names) and any(n.startswith("libavutil") for n in names)


def photo(h: int, w: int) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.resize(load_image("coco/000000000139.jpg"), (w, h)))


def guarded(h: int, w: int, pad: int = 256):
    """An aligned HxWx3 array inside a buffer whose bytes around it hold a known value."""
    buf = np.full(h * w * 3 + 64 + pad, 77, np.uint8)
    start = (64 - buf.ctypes.data % 64) % 64
    return buf, start, buf[start:start + h * w * 3].reshape(h, w, 3)


SIZES = [(640, 360), (1920, 1080), (176, 100), (720, 576), (48, 36), (48, 35)]
CASES = [(fmt, w, h) for fmt in sorted(swscale.FORMATS) for w, h in SIZES
         if not (h % 2 and fmt.endswith("420p"))]  # odd 4:2:0 heights are left to PyAV (tested below)


@pytest.mark.parametrize("fmt,w,h", CASES)
def test_same_pixels_as_pyav_and_nothing_written_outside(fmt, w, h):
    frame = av.VideoFrame.from_ndarray(photo(h, w), format="bgr24").reformat(format=fmt)
    buf, start, out = guarded(h, w)
    assert SCALER().convert(frame, out)
    np.testing.assert_array_equal(out, frame.to_ndarray(format="bgr24"))
    assert (buf[:start] == 77).all() and (buf[start + out.nbytes:] == 77).all()


@pytest.mark.parametrize("pix_fmt,params", [
    ("yuv420p", "colormatrix=bt709:colorprim=bt709:transfer=bt709"),  # an HD camera's tags
    ("yuvj420p", ""),  # full range, as MJPEG and many RTSP cameras send
    ("yuv420p", "colormatrix=bt709:fullrange=on"),
])
def test_tagged_colours_match_pyav(tmp_path, pix_fmt, params):
    path = tmp_path / "tagged.mp4"
    img = photo(360, 640)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"x264-params": params} if params else {})
        stream.width, stream.height, stream.pix_fmt = 640, 360, pix_fmt
        for _ in range(2):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format=pix_fmt)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    scaler = SCALER()
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            out_ = np.empty((360, 640, 3), np.uint8)
            assert scaler.convert(frame, out_)
            np.testing.assert_array_equal(out_, frame.to_ndarray(format="bgr24"))


@pytest.mark.parametrize("fmt,w,h", [("yuv420p", 322, 40), ("yuv420p", 648, 40), ("yuv420p", 640, 99),
                                     ("nv12", 640, 360)])
def test_other_sizes_and_formats_are_left_to_pyav(fmt, w, h):
    scaler = SCALER()
    frame = av.VideoFrame.from_ndarray(photo(h, w), format="bgr24").reformat(format=fmt)
    out = np.full((h, w, 3), 5, np.uint8)
    assert not scaler.convert(frame, out) and (out == 5).all()
    rgba = av.VideoFrame.from_ndarray(np.zeros((32, 64, 4), np.uint8), format="rgba")
    assert not scaler.convert(rgba, np.empty((32, 64, 3), np.uint8))


def test_one_scaler_follows_size_and_format_changes():
    scaler = SCALER()
    for fmt, (w, h) in [("yuv420p", (640, 360)), ("yuv444p", (320, 240)), ("yuv420p", (640, 360)), ("gray", (64, 48))]:
        frame = av.VideoFrame.from_ndarray(photo(h, w), format="bgr24").reformat(format=fmt)
        out = np.empty((h, w, 3), np.uint8)
        assert scaler.convert(frame, out)
        np.testing.assert_array_equal(out, frame.to_ndarray(format="bgr24"))
