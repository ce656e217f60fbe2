"""The test support itself, on real parts: clips encoded with PyAV from real photos, and a real
RTSP server (gst-rtsp-server) that PyAV pulls from, killed and restarted mid-stream."""

from __future__ import annotations

import time

import av
import pytest

from tests.support.clips import frame_count, make_clip, positions, probe, read_index
from tests.support.fixtures import clip_dir, rtsp_packages, rtsp_server, rtsp_server_factory  # noqa: F401
from tests.support.rtsp import CLIENT_OPTIONS, CLIENT_TIMEOUT

LOOP = 100  # frames in clip_dir/"cat.ts", which the rtsp_server fixture loops


def open_rtsp(url: str):
    return av.open(url, options=CLIENT_OPTIONS, timeout=CLIENT_TIMEOUT)


def read_frames(container, n: int) -> list[av.VideoFrame]:
    frames = []
    for frame in container.decode(video=0):
        frames.append(frame)
        if len(frames) == n:
            break
    return frames


def drain(container) -> tuple[int, str]:
    """Decode until the stream ends; (frames decoded, how it ended: 'eof' or the error's name)."""
    n = 0
    try:
        for _ in container.decode(video=0):
            n += 1
    except av.error.InvalidDataError as e:  # a packet truncated by the drop (seen with live x264 sources)
        return n, type(e).__name__
    return n, "eof"


# --- clips -------------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,kwargs", [
    ("slide.mp4", dict()),
    ("exit.mp4", dict(motion="exit", frames=30)),
    ("static.ts", dict(motion="static", container="mpegts", size=(320, 240), fps=10)),
    ("coco.mp4", dict(image="coco/000000007386.jpg", frames=20, size=(1280, 720))),
    ("hevc.mkv", dict(codec="hevc", frames=10)),
])
def test_make_clip_decodes_to_what_was_asked(tmp_path, name, kwargs):
    t0 = time.perf_counter()
    path = make_clip(tmp_path / name, **kwargs)
    took = time.perf_counter() - t0
    frames = kwargs.get("frames", 50)
    w, h = kwargs.get("size", (640, 360))
    info = probe(path)
    assert path.exists() and path.suffix == "." + name.split(".")[1]
    assert frame_count(path) == frames == info["frames"]
    assert (info["width"], info["height"]) == (w, h)
    assert info["codec"] == kwargs.get("codec", "h264")
    assert info["indices"] == list(range(frames)), "frame bar codes must read back in order"
    if name == "slide.mp4":
        assert took < 3, f"50 frames at 640x360 took {took:.2f} s"


def test_make_clip_container_from_argument(tmp_path):
    path = make_clip(tmp_path / "noext", frames=5, container="mpegts")
    assert path.suffix == ".ts"
    with av.open(str(path)) as f:
        assert f.format.name == "mpegts"
    assert frame_count(path) == 5


def test_motion_paths():
    size, sprite = (640, 360), (200, 120)
    slide = positions(10, size, sprite, "slide")
    assert slide[0] == 0 and slide[-1] == 440 and slide == sorted(slide)
    assert set(positions(10, size, sprite, "static")) == {220}
    exit_ = positions(10, size, sprite, "exit")
    assert exit_[0] == 220 and exit_[-1] == 640  # last frame: photo fully outside
    with pytest.raises(ValueError):
        positions(10, size, sprite, "zoom")


# --- RTSP --------------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_pyav_pulls_frames_over_tcp(rtsp_server):
    assert rtsp_server.url.startswith("rtsp://127.0.0.1:") and rtsp_server.url.endswith("/test")
    t0 = time.perf_counter()
    with open_rtsp(rtsp_server.url) as c:
        first = read_frames(c, 1)
        first_s = time.perf_counter() - t0
        frames = first + read_frames(c, 29)
    assert len(frames) == 30
    assert all((f.width, f.height) == (640, 360) for f in frames)
    idx = [read_index(f.to_ndarray(format="gray")) for f in frames]
    assert idx[0] == 0, "the first client of a fresh server sees the clip from its start"
    assert all((b - a) % LOOP == 1 for a, b in zip(idx, idx[1:])), f"frames lost or reordered: {idx}"
    pts = [f.pts for f in frames[1:] if f.pts is not None]
    assert pts == sorted(pts)
    assert first_s < 5, f"first frame after {first_s:.2f} s"


@pytest.mark.timeout(60)
def test_clip_loops_across_the_end_of_the_file(rtsp_server_factory, tmp_path):
    server = rtsp_server_factory(file=make_clip(tmp_path / "short.ts", frames=20))
    with open_rtsp(server.url) as c:
        frames = read_frames(c, 45)
    idx = [read_index(f.to_ndarray(format="gray")) for f in frames]
    assert idx == [i % 20 for i in range(45)]


@pytest.mark.timeout(60)
def test_kill_ends_the_stream_and_refuses_new_clients(rtsp_server):
    c = open_rtsp(rtsp_server.url)
    try:
        assert len(read_frames(c, 10)) == 10
        rtsp_server.kill()
        assert not rtsp_server.running
        t0 = time.perf_counter()
        after, how = drain(c)
        ended_s = time.perf_counter() - t0
    finally:
        c.close()
    assert how in ("eof", "InvalidDataError")
    assert ended_s < 3, f"decode loop still running {ended_s:.2f} s after the kill"
    assert after <= 5, f"{after} frames after the kill"
    with pytest.raises(av.error.ConnectionRefusedError):
        open_rtsp(rtsp_server.url).close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("drop", ["kill", "stop"])
def test_restart_on_the_same_url_serves_again(rtsp_server, drop):
    url = rtsp_server.url
    with open_rtsp(url) as c:
        assert len(read_frames(c, 5)) == 5
        getattr(rtsp_server, drop)()
        drain(c)
    rtsp_server.restart()
    assert rtsp_server.running and rtsp_server.url == url
    # bounded polling: a fresh client gets frames again
    deadline, frames, errors = time.monotonic() + 15, [], []
    while not frames and time.monotonic() < deadline:
        try:
            with open_rtsp(url) as c:
                frames = read_frames(c, 10)
        except av.error.FFmpegError as e:
            errors.append(repr(e))
    assert len(frames) == 10, f"no frames after restart; errors: {errors[-3:]}"
    assert [read_index(f.to_ndarray(format="gray")) for f in frames] == list(range(10))


@pytest.mark.timeout(60)
def test_pattern_server(rtsp_server_factory):
    server = rtsp_server_factory(pattern="ball")
    with open_rtsp(server.url) as c:
        frames = read_frames(c, 10)
    assert len(frames) == 10 and (frames[0].width, frames[0].height) == (640, 360)


@pytest.mark.timeout(60)
def test_two_servers_get_different_ports(rtsp_server, rtsp_server_factory, clip_dir):
    other = rtsp_server_factory(file=clip_dir / "cat.ts")
    assert other.port != rtsp_server.port
    for s in (rtsp_server, other):
        with open_rtsp(s.url) as c:
            assert len(read_frames(c, 3)) == 3
