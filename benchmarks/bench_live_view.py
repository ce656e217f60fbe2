"""Live view of a 720p30 stream: latency in chromium, bitrate against MJPEG, encoding CPU against a
plain PyAV loop -- side by side in one run.

The same picture everywhere: tests/support/clips.render_frames (a photo sliding over a gradient,
1280x720), on which tests/support/liveview's Stamp draws a green box and the send time as a bar code.

* live: the app of tests/support/liveview (VideoServer, files paced at 30 fps -> Stamp -> Visualize),
  started once for the module. Per round a new stream of the 20 s clip; first ``IDLE`` s without a
  viewer (CPU of the VideoServer's worker process, frames reaching its live channel: nothing is
  encoded), then headless chromium on ``/view/{id}`` for ``SAMPLES`` presented frames: per frame the
  latency = when chromium was to display it (``requestVideoFrameCallback``'s expectedDisplayTime)
  minus the time Stamp drew into it (both wall clock, same machine) -- from the frame entering the
  graph (just decoded) to the screen: encode, fMP4, HTTP, MSE, decode, compositor. Meanwhile: the
  worker's CPU per frame and the channel's encoded bytes per frame. Encoding cost per frame = CPU per
  frame while watched - CPU per frame while not watched (the BGR->I420 conversion, x264, the fMP4
  fragments, the fan-out and the HTTP writes).
* plain_encode: the same frames through PyAV's encoder in a plain loop (``VideoFrame.from_ndarray(
  bgr24)``, libx264 with the live view's settings: ultrafast, zerolatency, baseline, CRF 23, PyAV's
  conversion to yuv420p): CPU per frame (process CPU around each encode call, x264's threads included).
* mjpeg: the same frames as JPEG (OpenCV, quality ``JPEG_QUALITY``), the bytes an MJPEG stream sends.

Ratios in the summary (pytest -s): live bitrate / MJPEG bitrate, live encoding CPU / plain loop CPU.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import urllib.parse
from fractions import Fraction

import pytest

from harness import ROOT, interleaved, scaled

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import liveview  # noqa: E402
from tests.support.browser import Browser  # noqa: E402
from tests.support.clips import make_clip, render_frames  # noqa: E402

SIZE, FPS, FRAMES = (1280, 720), 30, 600
IDLE = scaled(30, 3) / 10  # seconds measured without a viewer
SAMPLES = scaled(150, 15)  # frames presented in chromium per round (5 s)
BASELINE_FRAMES = scaled(150, 15)
JPEG_QUALITY = 80
ROUNDS = {"live": 3, "plain_encode": 3, "mjpeg": 2}
RESULTS: dict[str, list[dict]] = {}


def stamp(frame, ms: int) -> None:
    """What the Stamp node draws (a fixed time: the content is what matters here)."""
    import cv2

    cv2.rectangle(frame, liveview.BOX[:2], liveview.BOX[2:], liveview.BOX_BGR, -1)
    cell, bits, y0 = liveview.CELL, liveview.BITS, liveview.BAR_Y
    frame[y0 - 8:y0 + cell + 8, :bits * cell + 16] = 128
    for b in range(bits):
        frame[y0:y0 + cell, 8 + b * cell:8 + (b + 1) * cell] = 255 if (ms >> (bits - 1 - b)) & 1 else 0


def frames():
    for i, frame in enumerate(render_frames(BASELINE_FRAMES, SIZE)):
        stamp(frame, 1000 * i // FPS)
        yield frame


def process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listener(root_pid: int, port: int) -> int:
    """The process of the app's tree that holds the socket listening on ``port`` (the VideoServer's worker)."""
    from harness import tree

    with open("/proc/net/tcp") as f:  # local address "0100007F:PORT", state 0A = LISTEN, inode in column 10
        inodes = {row[9] for row in (line.split() for line in list(f)[1:])
                  if row[3] == "0A" and int(row[1].split(":")[1], 16) == port}
    for pid in tree(root_pid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed meanwhile
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return pid
    raise AssertionError(f"no process of the app listens on {port}")


@pytest.fixture(scope="module")
def live_app(tmp_path_factory):
    import requests

    from serving import engine_env

    work = tmp_path_factory.mktemp("live")
    clip = make_clip(work / "clip720.mp4", frames=FRAMES, size=SIZE, fps=FPS, gop=FPS)
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = work / "liveapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "nodes.py").write_text(liveview.STAMP_NODE)
    (app / "liveapp.toml").write_text(liveview.app_toml(port, str(work)))
    import subprocess

    proc = subprocess.Popen([sys.executable, "-m", "megflow_mp.cli", "run", "-p", str(app)], env=engine_env(),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "listening on" in line:
            break
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    yield base, listener(proc.pid, port), urllib.parse.quote(str(clip), safe=""), requests
    proc.terminate()
    proc.wait(60)


def run_live(live_app) -> dict:
    base, worker, clip, requests = live_app
    sid = int(requests.post(f"{base}/start/{clip}", timeout=30).text.rsplit(" ", 1)[1])
    stats = lambda: requests.get(f"{base}/view/{sid}/stats", timeout=10).json()  # noqa: E731
    deadline = time.monotonic() + 30
    while stats()["frames_in"] < FPS and time.monotonic() < deadline:  # the stream is flowing
        time.sleep(0.1)
    s0, c0 = stats(), process_cpu(worker)
    time.sleep(IDLE)
    s1, c1 = stats(), process_cpu(worker)
    assert s1["frames_encoded"] == 0, "nothing is encoded without a viewer"
    with Browser() as browser:
        browser.open(f"{base}/view/{sid}")
        liveview.probe(browser, 15)  # playing
        s2, c2 = stats(), process_cpu(worker)
        shown = liveview.probe(browser, SAMPLES, timeout_ms=60000)
        s3, c3 = stats(), process_cpu(worker)
    requests.post(f"{base}/stop/{sid}", timeout=10)
    idle_cpu = (c1 - c0) / max(1, s1["frames_in"] - s0["frames_in"])
    watched = max(1, s3["frames_in"] - s2["frames_in"])
    encoded = max(1, s3["frames_encoded"] - s2["frames_encoded"])
    latencies = sorted(f["latency"] for f in shown)
    return {"latency_p50_ms": statistics.median(latencies), "latency_p95_ms": latencies[int(0.95 * len(latencies))],
            "latency_max_ms": latencies[-1], "bytes_per_frame": (s3["bytes_out"] - s2["bytes_out"]) / encoded,
            "cpu_ms_per_frame_watched": 1000 * (c3 - c2) / watched, "cpu_ms_per_frame_idle": 1000 * idle_cpu,
            "encode_cpu_ms_per_frame": 1000 * ((c3 - c2) / watched - idle_cpu),
            "frames_skipped": s3["skipped"] - s2["skipped"], "frames_watched": watched,
            "dropped_in_browser": shown[-1]["dropped"]}


def run_plain_encode() -> dict:
    import av

    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
    ctx.time_base, ctx.framerate = Fraction(1, FPS), Fraction(FPS, 1)
    ctx.gop_size = 120
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "crf": "23"}
    ctx.open()
    cpu, size = 0.0, 0
    for i, bgr in enumerate(frames()):
        start = time.process_time()
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
        frame.pts = i
        size += sum(p.size for p in ctx.encode(frame))
        cpu += time.process_time() - start
    return {"encode_cpu_ms_per_frame": 1000 * cpu / BASELINE_FRAMES, "bytes_per_frame": size / BASELINE_FRAMES}


def run_mjpeg() -> dict:
    import cv2

    sizes = [len(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]) for f in frames()]
    return {"bytes_per_frame": sum(sizes) / len(sizes)}


@pytest.mark.parametrize("variant,round_", interleaved(ROUNDS))
def test_live_view(benchmark, request, variant, round_):
    benchmark.group = "live_view"
    if variant == "live":
        app = request.getfixturevalue("live_app")
        result = benchmark.pedantic(run_live, args=(app,), rounds=1, iterations=1)
    elif variant == "plain_encode":
        result = benchmark.pedantic(run_plain_encode, rounds=1, iterations=1)
    else:
        result = benchmark.pedantic(run_mjpeg, rounds=1, iterations=1)
    result["kbit_per_s"] = result["bytes_per_frame"] * 8 * FPS / 1000
    benchmark.extra_info.update({"variant": variant, "round": round_ + 1, **result})
    RESULTS.setdefault(variant, []).append(result)
    print(f"\n{variant} round {round_ + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()))


def teardown_module():
    if not all(RESULTS.get(v) for v in ROUNDS):
        return
    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in RESULTS.items()}
    live, plain, mjpeg = med["live"], med["plain_encode"], med["mjpeg"]
    print("\n\nlive view, 1280x720 at 30 fps (medians over rounds):")
    print(f"  latency in chromium: p50 {live['latency_p50_ms']:.0f} ms, p95 {live['latency_p95_ms']:.0f} ms, "
          f"max {live['latency_max_ms']:.0f} ms (target <= 1000)")
    print(f"  bitrate: live {live['kbit_per_s']:.0f} kbit/s, plain loop {plain['kbit_per_s']:.0f} kbit/s, "
          f"MJPEG q{JPEG_QUALITY} {mjpeg['kbit_per_s']:.0f} kbit/s: live / MJPEG = "
          f"{live['kbit_per_s'] / mjpeg['kbit_per_s']:.3f}")
    print(f"  encoding CPU per frame: live {live['encode_cpu_ms_per_frame']:.2f} ms (watched "
          f"{live['cpu_ms_per_frame_watched']:.2f} - idle {live['cpu_ms_per_frame_idle']:.2f}), plain loop "
          f"{plain['encode_cpu_ms_per_frame']:.2f} ms: live / plain = "
          f"{live['encode_cpu_ms_per_frame'] / plain['encode_cpu_ms_per_frame']:.2f}")
