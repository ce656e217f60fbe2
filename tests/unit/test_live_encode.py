"""megflow_mp.live.encoder and .fmp4: BGR frames -> H.264 access units -> fragmented MP4 that a
decoder (PyAV's FFmpeg, as a browser's MSE parser would) reads back frame by frame."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from megflow_mp.live.encoder import H264Encoder, even_size, split_annexb, to_access_unit
from megflow_mp.live.fmp4 import TIMESCALE, codec_string, init_segment, media_segment


def picture(i: int, size=(320, 240)) -> np.ndarray:
    """A grey frame with a green square that moves 4 px per frame."""
    w, h = size
    frame = np.full((h, w, 3), 90, np.uint8)
    frame[40:100, 20 + 4 * i: 80 + 4 * i] = (0, 255, 0)
    return frame


def encode_stream(count: int, key_at=(), size=(320, 240)):
    encoder = H264Encoder(*size, keyint=1000)
    units = []
    for i in range(count):
        units += encoder.encode(picture(i, size), keyframe=i in key_at)
    return units


def as_file(units, size=(320, 240)) -> bytes:
    first = units[0]
    data = init_segment(*size, first.sps, first.pps)
    for n, unit in enumerate(units):
        data += media_segment(n + 1, n * 3000, 3000, unit.sample, unit.keyframe)
    return data


def test_split_annexb_takes_three_and_four_byte_start_codes():
    stream = b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce\x00\x00\x01\x65\x88\x00\x00"
    assert split_annexb(stream) == [b"\x67\x42", b"\x68\xce", b"\x65\x88\x00\x00"]


def test_access_unit_takes_out_parameter_sets_and_length_prefixes_the_slices():
    unit = to_access_unit(b"\x00\x00\x00\x01\x67\x42\xc0\x1f\x00\x00\x01\x68\xce\x00\x00\x01\x06\x05"
                          b"\x00\x00\x01\x65\x88\x84", keyframe=True)
    assert (unit.sps, unit.pps) == (b"\x67\x42\xc0\x1f", b"\x68\xce")
    assert unit.sample == b"\x00\x00\x00\x03\x65\x88\x84"  # SEI dropped
    assert codec_string(unit.sps) == "avc1.42c01f"


def test_one_access_unit_per_frame_keyframes_where_asked():
    units = encode_stream(12, key_at=(7,))
    assert len(units) == 12  # zerolatency: nothing held back
    assert [u.keyframe for u in units] == [i in (0, 7) for i in range(12)]
    assert all(u.sps and u.pps for u in units if u.keyframe)
    assert codec_string(units[0].sps).startswith("avc1.42")  # constrained baseline


def test_fragmented_mp4_decodes_back_to_the_frames():
    units = encode_stream(10, key_at=(5,))
    with av.open(io.BytesIO(as_file(units)), format="mp4") as f:
        stream = f.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
        packets = [p for p in f.demux(stream) if p.size]
        assert [p.dts for p in packets] == [n * 3000 for n in range(10)]
        assert [p.is_keyframe for p in packets] == [n in (0, 5) for n in range(10)]
        f.seek(0)
        frames = [fr.to_ndarray(format="bgr24") for fr in f.decode(stream)]
    assert len(frames) == 10
    for i, frame in enumerate(frames):
        b, g, r = frame[70, 50 + 4 * i].astype(int)
        assert g > 200 and b < 50 and r < 50  # the square, where it was drawn in frame i
        assert abs(int(frame[200, 300].mean()) - 90) < 8


def test_a_stream_can_start_at_a_later_keyframe():
    units = encode_stream(10, key_at=(6,))
    late = units[6:]
    with av.open(io.BytesIO(as_file(late)), format="mp4") as f:
        assert sum(1 for _ in f.decode(video=0)) == 4


def test_fragment_timing_fields():
    seg = media_segment(7, 5 * TIMESCALE, 1234, b"\x00\x00\x00\x01\x65", keyframe=False)
    assert seg[4:8] == b"moof" and b"mdat" in seg
    assert int.from_bytes(seg[20:24], "big") == 7  # mfhd sequence number
    tfdt = seg.index(b"tfdt")
    assert int.from_bytes(seg[tfdt + 8:tfdt + 16], "big") == 5 * TIMESCALE


def test_odd_sizes_are_cropped_to_even_and_tiny_ones_refused():
    assert even_size(641, 361) == (640, 360)
    encoder = H264Encoder(*even_size(321, 241))
    assert encoder.encode(np.zeros((241, 321, 3), np.uint8))[0].keyframe
    with pytest.raises(ValueError, match="even"):
        H264Encoder(8, 8)
