"""The video apps over N files at once (VideoInput, their shipped video_test.toml), next to baselines.

``STREAMS`` clips per app, encoded once per module with tests/support/clips.make_clip (a COCO photo
sliding across a gradient, H.264, 25 fps). Each engine run is ``megflow-mp run -c
configs/<app>/video_test.toml -p plugins/<app> --dynamic VARS`` in a subprocess, the app's own
settings except the ones named below. The run's wall time includes startup (imports, worker forks,
model loads), so every round also runs the same app on one-frame clips of the same files
(``startup``), and

    frames/s = (frames - streams) / (wall of the run - wall of the startup run of that round),
    CPU per frame = (CPU of the run - CPU of the startup run) / (frames - streams),

CPU being user + system time of the app's whole process tree (every worker, waited for). Rounds of
the variants are interleaved, the startup run first.

* group ``det_classify``: simple_det_classify (Detect -> Crop -> Classify -> Describe; YOLOX on every
  frame, MobileNetV2 on every crop, 1 thread each, ``wait_time`` 20 ms) with the classifier's
  ``batch_recv`` batching on (``max_batch`` 8, the app's default) and off (``max_batch`` 1); 640x360
  clips of photos with several objects. Every frame's message is checked (one per frame, classes
  for every object); the mean batch size is what the messages say.
* group ``electric_bicycle``: electric_bicycle with its defaults (YOLOX-nano ``.onnx`` on 1 thread,
  ``interval`` 5: every 5th frame of each stream detected; IoU tracks, ``min_hits`` 3; alerts
  RPUSHed to a private redis-server), 1280x720 clips (a lift camera's), vs ``decode``:
  benchmarks/video_decode.py (PyAV decode-only, one thread per file), and ``detect``:
  benchmarks/video_detect.py (the same decode plus the app's detector calls and IoU tracking in one
  plain process). Engine overhead = 1 - engine / baseline frames/s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import ROOT, interleaved, scaled
from serving import engine_cmd, engine_env, write_vars

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STREAMS = 4
APPS = {  # app -> clip size, frames per clip, photos
    "simple_det_classify": ((640, 360), scaled(30, 4), ["coco/000000000139.jpg", "coco/000000007386.jpg", "images/pets.jpg",
                                             "coco/000000000632.jpg"]),
    # not scaled: in fewer frames the motorbike's track does not last long enough to alert
    "electric_bicycle": ((1280, 720), 150, ["coco/000000007816.jpg", "coco/000000007386.jpg", "images/cat_720p.jpg",
                                            "coco/000000000139.jpg"]),
}
BATCHING = {"startup": 3, "batch-8": 3, "batch-1": 3}
BICYCLE = {"startup": 3, "engine": 3, "detect": 3, "decode": 3}
BICYCLE_MODEL = "models/yolox_nano.onnx"


def make_clips(folder, app: str) -> dict[str, list[str]]:
    """``{"full": [...], "startup": [...]}``: the app's clips and one-frame clips of the same photos."""
    from tests.support.clips import make_clip

    size, frames, photos = APPS[app]
    return {kind: [str(make_clip(folder / f"{app}_{kind}_{i}.mp4", frames=n, size=size, image=photos[i]))
                   for i in range(STREAMS)] for kind, n in (("full", frames), ("startup", 1))}


def run_app(app: str, variables: dict, timeout: float = 240, config: Path | None = None, args: tuple = ()) -> dict:
    """Run ``configs/<app>/video_test.toml`` (or ``config``, with the app's plugins) to its end, with
    more ``run`` options ``args``: ``wall``, ``cpu_s`` (the process tree of this machine) and the
    stream messages VideoInput logged (``messages``: (stream, JSON-decoded message))."""
    vars_file = write_vars(variables)
    try:
        c0, t0 = os.times(), time.perf_counter()
        cmd = engine_cmd(config or ROOT / "configs" / app / "video_test.toml", ROOT / "plugins" / app, vars_file)
        r = subprocess.run([*cmd, *args], cwd=ROOT, env=engine_env(), capture_output=True, text=True, timeout=timeout)
        wall, c1 = time.perf_counter() - t0, os.times()
    finally:
        os.unlink(vars_file)
    assert r.returncode == 0, f"{app} exited with {r.returncode}:\n{r.stderr[-3000:]}"
    messages = []
    for line in r.stderr.splitlines():
        head, _, body = line.partition(": ")
        if head.startswith("[megflow-mp] INFO stream ") and body.startswith("{"):
            messages.append((int(head.rsplit(" ", 1)[1]), json.loads(body)))
    return {"wall": wall, "cpu_s": c1.children_user - c0.children_user + c1.children_system - c0.children_system,
            "messages": messages}


def net_of(result: dict, startup: dict, frames: int) -> dict:
    """frames/s and CPU per frame beyond the startup run (see the module doc)."""
    counted = frames - STREAMS
    seconds = result["wall"] - startup["wall"]
    return {"rate": counted / seconds, "seconds": seconds, "frames": frames, "wall": result["wall"],
            "startup_wall": startup["wall"], "cpu_ms_per_frame": 1000 * (result["cpu_s"] - startup["cpu_s"]) / counted}


def run_script(script: str, args: list[str], timeout: float = 240) -> dict:
    """A baseline script of this folder; its JSON line, with ``cpu_ms_per_frame``."""
    env = dict(engine_env())
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["cpu_ms_per_frame"] = 1000 * result["cpu_s"] / result["frames"]
    return result


# -- simple_det_classify: batch_recv on and off ----------------------------------------------------------
@pytest.fixture(scope="module")
def det_classify_clips(tmp_path_factory):
    return make_clips(tmp_path_factory.mktemp("det_classify"), "simple_det_classify")


def run_det_classify(clips: dict, variant: str, startups: dict, round_: int) -> dict:
    urls = clips["startup" if variant == "startup" else "full"]
    max_batch = 1 if variant == "batch-1" else 8
    result = run_app("simple_det_classify", {"urls": urls, "max_batch": max_batch})
    frames = 1 if variant == "startup" else APPS["simple_det_classify"][1]
    msgs = [m for _, m in result["messages"]]
    assert len(msgs) == STREAMS * frames, f"{len(msgs)} frame messages for {STREAMS} x {frames} frames"
    assert all(obj.get("classes") for m in msgs for obj in m["objects"]), "an object without classes"
    assert sum(len(m["objects"]) for m in msgs) >= len(msgs), "the photos should give objects on every frame"
    if variant == "startup":
        startups[round_] = result
        return {"rate": 0.0, "wall": result["wall"], "cpu_s": result["cpu_s"]}
    if round_ not in startups:  # the startup variant was deselected: run it now, untimed
        startups[round_] = run_app("simple_det_classify", {"urls": clips["startup"]})
    out = net_of(result, startups[round_], STREAMS * frames)
    out["mean_batch"] = sum(m["batch"] for m in msgs) / len(msgs)
    out["objects_per_frame"] = sum(len(m["objects"]) for m in msgs) / len(msgs)
    return out


@pytest.fixture(scope="module")
def det_classify_startups() -> dict:
    return {}


@pytest.mark.benchmark(group="det_classify")
@pytest.mark.parametrize("variant,round_", interleaved(BATCHING))
def test_det_classify_batching(benchmark, det_classify_clips, det_classify_startups, variant, round_):
    result = benchmark.pedantic(run_det_classify, args=(det_classify_clips, variant, det_classify_startups, round_),
                                rounds=1, iterations=1)
    size, frames, _ = APPS["simple_det_classify"]
    benchmark.extra_info.update({"variant": variant, "round": round_ + 1, "unit": "frames/s", "streams": STREAMS,
                                 "frames_per_file": frames, "size": list(size),
                                 **{k: v for k, v in result.items() if isinstance(v, (int, float))}})


# -- electric_bicycle vs decode-only and a plain decode + detect loop ----------------------------------------
@pytest.fixture(scope="module")
def bicycle_clips(tmp_path_factory):
    return make_clips(tmp_path_factory.mktemp("electric_bicycle"), "electric_bicycle")


@pytest.fixture(scope="module")
def bicycle_redis():
    from tests.support.redis import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def bicycle_startups() -> dict:
    return {}


def run_bicycle(clips: dict, variant: str, redis, startups: dict, round_: int) -> dict:
    frames = APPS["electric_bicycle"][1]
    if variant == "decode":
        return run_script("video_decode.py", clips["full"])
    if variant == "detect":
        return run_script("video_detect.py", ["--model", BICYCLE_MODEL, "--interval", "5", "--threads", "1",
                                              *clips["full"]])
    prefix = f"bench.{variant}.{round_}."
    urls = clips["startup" if variant == "startup" else "full"]
    result = run_app("electric_bicycle", {"urls": urls, "redis_port": redis.port, "redis_prefix": prefix})
    alerts = [m for _, m in result["messages"]]
    pushed = [json.loads(m) for m in redis.client().lrange(f"{prefix}alerts", 0, -1)]
    assert sorted(map(json.dumps, pushed)) == sorted(map(json.dumps, alerts)), (alerts, pushed)
    assert all(a["label"] in ("motorbike", "bicycle") and a["frame"] % 5 == 0 for a in alerts), alerts
    if variant == "startup":
        startups[round_] = result
        return {"rate": 0.0, "wall": result["wall"], "cpu_s": result["cpu_s"]}
    assert 0 in {a["stream"] for a in alerts}, f"the motorbike clip (stream 0) should alert: {alerts}"
    if round_ not in startups:
        startups[round_] = run_app("electric_bicycle", {"urls": clips["startup"], "redis_port": redis.port,
                                                        "redis_prefix": prefix + "startup."})
    out = net_of(result, startups[round_], STREAMS * frames)
    out["alerts"] = len(alerts)
    return out


@pytest.mark.benchmark(group="electric_bicycle")
@pytest.mark.parametrize("variant,round_", interleaved(BICYCLE))
def test_electric_bicycle(benchmark, bicycle_clips, bicycle_redis, bicycle_startups, variant, round_):
    result = benchmark.pedantic(run_bicycle, args=(bicycle_clips, variant, bicycle_redis, bicycle_startups, round_),
                                rounds=1, iterations=1)
    if variant in ("decode", "detect"):
        assert result["per_file"] == [APPS["electric_bicycle"][1]] * STREAMS, result
    size, frames, _ = APPS["electric_bicycle"]
    benchmark.extra_info.update({"variant": variant, "round": round_ + 1, "unit": "frames/s", "streams": STREAMS,
                                 "frames_per_file": frames, "size": list(size), "interval": 5, "threads": 1,
                                 **{k: v for k, v in result.items() if isinstance(v, (int, float))}})
