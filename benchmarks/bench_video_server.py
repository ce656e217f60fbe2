"""N video files decoded at once: the engine's VideoServer and VideoInput vs PyAV decode-only, frames/s.

``STREAMS`` H.264 clips per size of ``SIZES``, 25 fps, encoded once per session with
tests/support/clips.make_clip (a different COCO photo sliding across each; yuv420p, no B-frames,
keyframe every 25 frames, x264 ultrafast): 640x360 (600 frames per file), where decoding is so cheap
(~0.5 ms of CPU a frame) that the engine's fixed cost per frame shows, and 1920x1080, a camera's
frames (200 per file, about as long a round). The same files, in every variant, all at once:

* server: the app benchmarks/apps/video (video_server.toml), started once for the module (startup
  excluded). Each round POSTs ``/start/{file}`` for the N files from N threads at once, then polls
  ``GET /list`` and ``GET /get_msgs/{id}`` every ``POLL`` s until every stream is ``finished`` and
  every stream's CountSink sent its closing count. Time: from just before the first ``/start`` to
  the last frame the sinks received (their wall-clock stamp, the same clock). Each stream runs in
  its own instance of the subgraph ``count`` (one CountSink: counts, checks frame order, copies
  nothing) in the sink's worker; the VideoServer's worker decodes (one PyAV reader thread per
  stream) and writes each frame once into shared memory. 2 workers + the supervisor.
* input: VideoInput over the same files (video_input.toml), one run per round. Time: from the
  moment the first stream's instance was built (right after its file was opened; process start,
  imports and worker forks excluded) to the last frame the sinks received.
* decode: benchmarks/video_decode.py, a fresh process per round: one thread per file (as many
  decode threads as the engine's readers), each ``av.open`` with the engine's codec settings
  (``thread_type = "AUTO"``, ``thread_count = THREADS``) and the engine's own BGR conversion
  (``--convert engine``) into one array per thread, reused for every frame: decoding and converting
  with nothing allocated, queued or sent. Time: from just before the first ``av.open`` to the last
  frame decoded. The baseline of the target.
* decode_pyav: the same with PyAV's one-liner ``frame.to_ndarray(format="bgr24")`` (``--convert
  to_ndarray``), what a plain PyAV loop does.

frames/s = all frames of all files / time. Engine overhead = 1 - engine / decode-only (target <= 10%).
CPU per frame (user + system, every thread): the whole engine app (supervisor and both workers)
over a server round; the decode-only process over its timed span.
Rounds of the variants are interleaved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from harness import APPS, ROOT, interleaved, scaled
from serving import engine_cmd, engine_env, engine_server, tree_cpu, write_vars

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STREAMS = 4
# "WxH" -> frames per file: each about 2-3 s of engine work per round on 2 shared cores
SIZES = {"640x360": scaled(600, 12), "1920x1080": scaled(200, 6)}
PHOTOS = ["coco/000000000139.jpg", "coco/000000000285.jpg", "coco/000000000632.jpg", "coco/000000000724.jpg",
          "coco/000000000776.jpg", "coco/000000000785.jpg", "coco/000000000802.jpg", "coco/000000000872.jpg"]
CAP = 16  # subgraph channel capacity
QUEUE = 8  # decoded frames buffered per reader (VideoServer's default)
THREADS = 0  # codec threads per stream: 0 = FFmpeg's choice (VideoServer's default)
POLL = 0.05
ROUNDS = {"server": 4, "input": 4, "decode": 4, "decode_pyav": 3}
APP = APPS / "video"


def dims(size: str) -> tuple[int, int]:
    w, h = size.split("x")
    return int(w), int(h)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def all_clips(clip_folder) -> dict[str, list[str]]:
    """size -> its ``STREAMS`` files (every size made on first use, in one folder)."""
    return {}


@pytest.fixture
def clips(all_clips, clip_folder, size) -> list[str]:
    from tests.support.clips import make_clip

    if size not in all_clips:
        all_clips[size] = [str(make_clip(clip_folder / f"clip{size}_{i}.mp4", frames=SIZES[size], size=dims(size),
                                         image=PHOTOS[i % len(PHOTOS)])) for i in range(STREAMS)]
    return all_clips[size]


@pytest.fixture(scope="module")
def video_server(clip_folder):
    server = engine_server(APP / "video_server.toml", APP, {"cap": CAP, "queue_size": QUEUE, "threads": THREADS,
                                                            "allow_dir": str(clip_folder)},
                           name="engine VideoServer")
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, f"the VideoServer app did not drain cleanly ({code}):\n{server.output()[-3000:]}"


def _check_counts(msgs: list[dict], n_files: int, size: str) -> int:
    assert len(msgs) == n_files, f"{len(msgs)} of {n_files} streams reported"
    w, h = dims(size)
    for m in msgs:
        assert m["count"] == SIZES[size] and m["bad"] == 0, m
        assert m["shape"] == [h, w, 3], m
    return sum(m["count"] for m in msgs)


def run_server(server, files: list[str], size: str, timeout: float = 120) -> dict:
    import requests

    url = server.url
    cpu0 = tree_cpu(server.proc.pid)
    quote = requests.utils.quote
    ids: list[int] = [-1] * len(files)
    barrier = threading.Barrier(len(files) + 1)
    errors: list[str] = []

    def start(i: int) -> None:
        with requests.Session() as s:
            barrier.wait()
            r = s.post(f"{url}/start/{quote(files[i], safe='')}", timeout=30)
            if r.status_code != 200:
                errors.append(r.text)
            else:
                ids[i] = int(r.text.rsplit(" ", 1)[1])

    threads = [threading.Thread(target=start, args=(i,), daemon=True) for i in range(len(files))]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.time()
    for t in threads:
        t.join()
    assert not errors, errors
    msgs: dict[int, dict] = {}
    finished_at = None
    deadline = time.monotonic() + timeout
    with requests.Session() as s:
        while True:
            streams = {i["id"]: i for i in s.get(f"{url}/list", timeout=10).json()}
            states = [streams[i]["state"] for i in ids]
            assert "error" not in states, [streams[i] for i in ids]
            if finished_at is None and all(st == "finished" for st in states):
                finished_at = time.time()
            for i in ids:
                if i not in msgs:
                    got = s.get(f"{url}/get_msgs/{i}", timeout=10).json()
                    if got:
                        msgs[i] = json.loads(got[0])
            if finished_at is not None and len(msgs) == len(ids):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"streams not done within {timeout} s: {[streams[i] for i in ids]}")
            time.sleep(POLL)
    cpu = tree_cpu(server.proc.pid) - cpu0
    for i in ids:
        assert streams[i]["frames"] == SIZES[size] and streams[i]["dropped"] == 0, streams[i]
    frames = _check_counts(list(msgs.values()), len(files), size)
    end = max(m["t_last"] for m in msgs.values())
    return {"rate": frames / (end - t0), "frames": frames, "seconds": end - t0,
            "rate_from_instances": frames / (end - min(m["t_init"] for m in msgs.values())),
            "first_frame_s": min(m["t_first"] for m in msgs.values()) - t0,
            "finished_seen_s": finished_at - t0, "cpu_ms_per_frame": 1000 * cpu / frames}


def run_input(files: list[str], size: str, timeout: float = 120) -> dict:
    vars_file = write_vars({"cap": CAP, "queue_size": QUEUE, "threads": THREADS, "urls": files})
    try:
        t0 = time.time()
        r = subprocess.run(engine_cmd(APP / "video_input.toml", APP, vars_file), cwd=ROOT, env=engine_env(),
                           capture_output=True, text=True, timeout=timeout)
        wall = time.time() - t0
    finally:
        os.unlink(vars_file)
    assert r.returncode == 0, f"VideoInput run exited with {r.returncode}:\n{r.stderr[-3000:]}"
    msgs = [json.loads(line.split(": ", 1)[1]) for line in r.stderr.splitlines()
            if " INFO stream " in f" {line}" and '"count"' in line]
    frames = _check_counts(msgs, len(files), size)
    start, end = min(m["t_init"] for m in msgs), max(m["t_last"] for m in msgs)
    return {"rate": frames / (end - start), "frames": frames, "seconds": end - start, "wall": wall,
            "startup_s": start - t0}


def run_decode(files: list[str], size: str, convert: str = "engine", timeout: float = 120) -> dict:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "video_decode.py"), "--threads", str(THREADS),
                        "--convert", convert, *files], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["per_file"] == [SIZES[size]] * len(files), result
    result["cpu_ms_per_frame"] = 1000 * result["cpu_s"] / result["frames"]
    return result


@pytest.mark.benchmark(group="video")
@pytest.mark.parametrize("variant,round_", interleaved(ROUNDS))
@pytest.mark.parametrize("size", SIZES)
def test_video(benchmark, request, clips, size, variant, round_):
    if variant == "server":
        server = request.getfixturevalue("video_server")
        result = benchmark.pedantic(run_server, args=(server, clips, size), rounds=1, iterations=1)
    elif variant == "input":
        result = benchmark.pedantic(run_input, args=(clips, size), rounds=1, iterations=1)
    else:
        convert = "to_ndarray" if variant == "decode_pyav" else "engine"
        result = benchmark.pedantic(run_decode, args=(clips, size, convert), rounds=1, iterations=1)
    benchmark.extra_info.update({
        "variant": variant, "round": round_ + 1, "unit": "frames/s", "streams": len(clips),
        "frames_per_file": SIZES[size], "size": list(dims(size)), "codec_threads": THREADS,
        **{k: v for k, v in result.items() if isinstance(v, (int, float))}})
