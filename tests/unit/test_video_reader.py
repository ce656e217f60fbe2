"""StreamReader: files decoded in order on a thread, queue policies, stop, open errors, reconnect backoff."""

from __future__ import annotations

import socket
import threading
import time

import av
import numpy as np
import pytest

from megflow_mp.errors import MegFlowError
from megflow_mp.errors import ReaderError
from megflow_mp.video.reader import EMPTY, Frame, StreamReader
from megflow_mp.video.source import ReaderOptions

W, H, N = 320, 240, 40
SQUARE = 40  # side of the red square, which moves 6 px right per frame


def digit_gray(d: int) -> int:
    return 16 + 28 * d  # base-8 digits, 28 gray levels apart: robust to h264 and yuv->bgr rounding


def make_clip(path, frames: int = N, fps: int = 25) -> str:
    """An h264 clip: two gray blocks at the top-left whose levels encode the frame number in base 8
    (high digit, low digit), and a red square moving right."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(frames):
            img = np.zeros((H, W, 3), np.uint8)
            img[:32, :64] = digit_gray(i // 8)
            img[:32, 64:128] = digit_gray(i % 8)
            x = 6 * i
            img[100:100 + SQUARE, x:x + SQUARE] = (0, 0, 255)  # BGR red
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


def frame_number(data: np.ndarray) -> int:
    high, low = (round((float(data[4:28, x:x + 56].mean()) - 16) / 28) for x in (4, 68))
    return 8 * high + low


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4")


def read_all(reader: StreamReader, delay: float = 0.0) -> list[Frame]:
    frames = []
    while True:
        frame = reader.get(timeout=10)
        assert frame is not EMPTY, "reader stalled"
        if frame is None:
            return frames
        frames.append(frame)
        if delay:
            time.sleep(delay)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_file_is_read_completely_in_order(clip):
    states = []
    t0 = time.monotonic()
    reader = StreamReader(clip, on_state=lambda s, d: states.append(s))
    reader.start()
    first = reader.get(timeout=10)
    first_latency = time.monotonic() - t0
    frames = [first] + read_all(reader)
    fps = reader.fps
    reader.stop()
    print(f"open + first frame: {first_latency * 1000:.1f} ms")
    assert first_latency < 2.0
    assert len(frames) == N
    assert [f.index for f in frames] == list(range(N))
    assert [frame_number(f.data) for f in frames] == list(range(N))
    for f in frames:
        assert f.data.shape == (H, W, 3) and f.data.dtype == np.uint8 and f.data.flags.c_contiguous
    pts = [f.pts for f in frames]
    assert pts[0] == pytest.approx(0.0, abs=0.1) and all(b > a for a, b in zip(pts, pts[1:]))
    # BGR: the square is red (channel 2 high, channel 0 low), placed where frame 10 drew it
    sq = frames[10].data[110:130, 70:90].reshape(-1, 3).mean(axis=0)
    assert sq[2] > 200 and sq[0] < 50 and sq[1] < 50
    assert reader.state == "finished" and reader.error is None
    assert states == ["running", "finished"]  # stop() after the end changes nothing
    assert reader.frames_decoded == N and reader.frames_dropped == 0 and reader.reconnects == 0
    assert fps > 0
    assert reader.get(timeout=0) is None  # the end is for good


def test_drain_wakes_a_file_consumer_once_per_half_queue(clip):
    """drain(waker): every frame in order; after a wake-up a file's consumer finds at least half a
    queue (4 of 8 small frames) ready, except for the last batch, which the end wakes. Frames of
    WAKE_BYTES or more are handed over one by one, live sources' always."""
    reader = StreamReader(clip, ReaderOptions(queue_size=8))
    reader.start()
    woke = threading.Event()
    batches, frames = [], []
    while True:
        woke.clear()
        got = reader.drain(woke.set)
        if got is None:
            break
        if not got:
            assert woke.wait(10), "drain consumer never woken"
            got = reader.drain(woke.set)
            if got is None:
                break
            batches.append(len(got))
        frames.extend(got)
    assert [f.index for f in frames] == list(range(N))
    assert batches and all(n >= 4 for n in batches[:-1]), batches
    assert reader._batch(1920 * 1080 * 3) == 1 and reader._batch(640 * 360 * 3) == 3
    live = StreamReader("rtsp://127.0.0.1:9/x", ReaderOptions(queue_size=8))
    assert live._wake_at == 1


def test_block_policy_never_drops_with_a_slow_consumer(clip):
    reader = StreamReader(clip, ReaderOptions(queue_size=2))
    reader.start()
    frames = read_all(reader, delay=0.005)
    assert [frame_number(f.data) for f in frames] == list(range(N))
    assert reader.frames_dropped == 0 and reader.frames_decoded == N
    reader.stop()


def test_drop_oldest_drops_and_counts_when_the_consumer_is_slow(clip):
    reader = StreamReader(clip, ReaderOptions(policy="drop_oldest", queue_size=2))
    reader.start()
    assert wait_until(lambda: reader.state == "finished")  # decoded everything before any get
    frames = read_all(reader)
    assert reader.frames_decoded == N
    assert reader.frames_dropped == N - 2 and len(frames) == 2
    assert [f.index for f in frames] == [N - 2, N - 1]  # the newest frames survive
    assert [frame_number(f.data) for f in frames] == [N - 2, N - 1]


def test_drop_oldest_keeps_order_with_a_moderately_slow_consumer(clip):
    reader = StreamReader(clip, ReaderOptions(policy="drop_oldest", queue_size=3, realtime=True))
    reader.start()
    frames = read_all(reader, delay=0.07)  # slower than 25 fps
    idx = [f.index for f in frames]
    assert idx == sorted(set(idx)) and idx[-1] == N - 1
    assert [frame_number(f.data) for f in frames] == idx
    assert reader.frames_dropped > 0 and len(frames) + reader.frames_dropped == N


def test_realtime_paces_a_file_at_its_frame_rate(tmp_path):
    path = make_clip(tmp_path / "short.mp4", frames=10, fps=25)
    reader = StreamReader(path, ReaderOptions(realtime=True))
    t0 = time.monotonic()
    reader.start()
    frames = read_all(reader)
    elapsed = time.monotonic() - t0
    assert len(frames) == 10
    assert 0.3 <= elapsed < 2.0  # 9 frame intervals of 40 ms


def test_stop_mid_file(clip):
    states = []
    reader = StreamReader(clip, ReaderOptions(queue_size=2), on_state=lambda s, d: states.append(s))
    reader.start()
    got = [reader.get(timeout=10) for _ in range(5)]
    assert [f.index for f in got] == [0, 1, 2, 3, 4]
    t0 = time.monotonic()
    reader.stop()
    assert time.monotonic() - t0 < 1.0
    rest = read_all(reader)
    assert len(rest) <= 2 and [f.index for f in rest] == list(range(5, 5 + len(rest)))
    assert reader.get(timeout=0) is None
    assert reader.state == "stopped" and states == ["running", "stopped"]
    assert reader.frames_decoded < N
    assert not reader._thread.is_alive()


def test_missing_file_raises_reader_error_at_start(tmp_path):
    path = str(tmp_path / "nope.mp4")
    states = []
    reader = StreamReader(path, on_state=lambda s, d: states.append((s, d)))
    with pytest.raises(ReaderError) as info:
        reader.start()
    assert isinstance(info.value, MegFlowError)
    assert path in str(info.value)
    assert reader.state == "error" and path in reader.error
    assert states == [("error", reader.error)]
    assert reader.get(timeout=0) is None


def test_not_a_video_raises_reader_error(tmp_path):
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"not a video at all" * 100)
    with pytest.raises(ReaderError, match="junk.mp4"):
        StreamReader(str(path)).start()


def test_unreachable_rtsp_reconnects_with_backoff_and_stops_quickly():
    url = f"rtsp://127.0.0.1:{free_port()}/x"
    events = []
    lock = threading.Lock()

    def on_state(state, detail):
        with lock:
            events.append((time.monotonic(), state, detail))

    opts = ReaderOptions(open_timeout=1.0, read_timeout=1.0, backoff_initial=0.05, backoff_max=0.2)
    reader = StreamReader(url, opts, on_state=on_state)
    assert reader.live and reader.reconnect and reader.policy == "drop_oldest"
    reader.start()  # live: never raises, the thread retries
    assert wait_until(lambda: reader.reconnects >= 4, timeout=5)
    assert reader.state == "reconnecting" and reader.error is None
    assert reader.get(timeout=0.01) is EMPTY
    with lock:
        tries = [(t, d) for t, s, d in events if s == "reconnecting"]
    assert all("connection refused" in d and url in d for _, d in tries)
    assert "retry in 0.05s" in tries[0][1] and "retry in 0.10s" in tries[1][1]
    assert "retry in 0.20s" in tries[3][1]  # capped at backoff_max
    gaps = [b[0] - a[0] for a, b in zip(tries, tries[1:])]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.195
    t0 = time.monotonic()
    reader.stop()
    took = time.monotonic() - t0
    assert took < 0.5, took
    assert reader.get(timeout=1) is None
    assert reader.state == "stopped" and events[-1][1] == "stopped"
    assert not reader._thread.is_alive()


def test_unreachable_rtsp_gives_up_after_max_reconnects():
    url = f"rtsp://127.0.0.1:{free_port()}/x"
    states = []
    opts = ReaderOptions(backoff_initial=0.01, backoff_max=0.02, max_reconnects=2)
    reader = StreamReader(url, opts, on_state=lambda s, d: states.append(s))
    reader.start()
    assert reader.get(timeout=5) is None
    assert reader.state == "error" and reader.error.startswith("gave up after 2 reconnects")
    assert url in reader.error and reader.reconnects == 2
    assert states == ["reconnecting"] * 2 + ["error"]  # 3 attempts: the first and 2 reconnects


def test_live_without_reconnect_reports_the_error():
    url = f"rtsp://127.0.0.1:{free_port()}/x"
    reader = StreamReader(url, ReaderOptions(reconnect=False))
    reader.start()
    assert reader.get(timeout=5) is None
    assert reader.state == "error" and reader.error == f"connection refused: {url}"


def test_reconnect_on_a_file_loops_it(tmp_path):
    path = make_clip(tmp_path / "loop.mp4", frames=5)
    opts = ReaderOptions(reconnect=True, backoff_initial=0.01)
    reader = StreamReader(path, opts)
    reader.start()
    frames = [reader.get(timeout=5) for _ in range(12)]
    reader.stop()
    assert [f.index for f in frames] == list(range(12))
    assert [frame_number(f.data) for f in frames] == [i % 5 for i in range(12)]
    assert reader.reconnects >= 2


def test_bad_options_are_rejected():
    with pytest.raises(ValueError):
        StreamReader("x.mp4", ReaderOptions(policy="newest"))
    with pytest.raises(ValueError):
        StreamReader("x.mp4", ReaderOptions(queue_size=0))
    with pytest.raises(RuntimeError):
        StreamReader("x.mp4").get(timeout=0)


def test_stop_is_bounded_while_av_open_blocks_on_a_silent_server():
    """A server that accepts the connection and never answers: av.open blocks until its timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    url = f"rtsp://127.0.0.1:{server.getsockname()[1]}/x"
    try:
        opts = ReaderOptions(open_timeout=1.0, read_timeout=1.0, backoff_initial=0.05)
        reader = StreamReader(url, opts)
        reader.start()
        time.sleep(0.3)  # inside av.open, waiting for the RTSP reply
        assert reader.state == "starting"
        t0 = time.monotonic()
        reader.stop()
        took = time.monotonic() - t0
        assert took < 2.5, took  # open/read timeout + 1 s at most
        assert reader.get(timeout=0) is None and reader.state == "stopped"
        assert wait_until(lambda: not reader._thread.is_alive(), timeout=5)
    finally:
        server.close()


def test_bgr_converter_matches_pyav_and_fills_the_given_array(tmp_path):
    import av

    from megflow_mp.video.reader import BGRConverter

    made = []

    def alloc(shape, dtype):
        made.append(np.zeros(shape, dtype))
        return made[-1]

    from tests.support.clips import make_clip as make_photo_clip

    path = make_photo_clip(tmp_path / "odd.mp4", frames=3, size=(322, 182))  # lines padded past 3 * width
    to_bgr = BGRConverter(alloc)
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            out = to_bgr(frame)
            assert out is made[-1] and out.flags.c_contiguous
            np.testing.assert_array_equal(out, frame.to_ndarray(format="bgr24"))
    assert len(made) == 3
    other = make_photo_clip(tmp_path / "bigger.mp4", frames=2, size=(640, 360))
    with av.open(str(other)) as c:  # a new size through the same converter (its context is remade)
        for frame in c.decode(video=0):
            np.testing.assert_array_equal(to_bgr(frame), frame.to_ndarray(format="bgr24"))
    assert made[-1].shape == (360, 640, 3)
