"""Cameras per machine: how many live RTSP cameras a detection app holds in real time.

Cameras: GStreamer's RTSP server (tests/support/rtsp.py, one per resolution) loops an H.264 clip
encoded once per module with tests/support/clips.make_clip (a COCO photo with a motorbike sliding
across a gradient, 25 fps, keyframe every 25 frames), at 640x360 and 1280x720. Each client gets a
pipeline of its own that only demuxes and packetizes the file (no encoding: about 1.5% of a core
per camera, paced at the clip's 25 fps); a shared media of a file refuses a second client.

App: YOLOX-nano (``models/yolox_nano.onnx``, onnxruntime, 1 thread) with electric_bicycle's defaults
(``interval`` 5: every 5th frame of each stream detected; ``conf`` 0.3):

* ``engine``: benchmarks/apps/cameras (VideoServer; per stream the subgraph Detect -> Summary, Detect
  being plugins/simple_det_classify's, declared once and shared by every stream; reader defaults:
  queue of 8 frames, drop the oldest when full); cameras added with ``POST /start/{url}``,
  measured with ``GET /list`` (per stream ``frames``, ``dropped``, ``latency_p95_ms``: the age of a
  frame from its decoding to its result leaving the stream's subgraph, over the last 10 s).
* ``plain``: benchmarks/plain_cameras.py, the program a user writes instead (a decode thread and a
  detect thread per camera, a bounded drop-oldest queue of 8 frames between them, one shared
  ``megflow_mp.models.Detector``), measuring the same three things the same way.

Each variant ramps up: cameras are added up to the step's N (``STEPS``: 1, 2, ... 8, then by 2 up
to 16), the step settles for ``SETTLE`` s, then is measured over ``WINDOW`` s. A step holds when
every camera is running, frames dropped over the window <= 1% of frames decoded, every camera's p95
latency <= 1 s, and the cameras were decoded at >= 95% of their 25 fps (a decoder that falls
behind leaves frames in the socket, neither dropped nor late by the measure above). The first step
that does not hold ends the ramp; when it added two cameras, one is stopped again and N - 1
measured after ``REFINE_SETTLE`` s. The figure is the largest N that held (16 at most: shown as
"16+"). CPU per step: the whole process tree's (the RTSP server excluded), in cores.

Size: at full size 5.5 s per step (p95 is over the last 10 s: it reaches into the step before,
alike for both), 4 ramps of at most 13 steps; ``BENCH_SCALE`` 0.02 (``make test``) runs one step of
each variant at 640x360 only, so that a break is caught (its figures mean nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from harness import APPS, ROOT, SCALE
from serving import Server, engine_cmd, engine_env, tree_cpu, write_vars

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FPS = 25
INTERVAL = 5          # electric_bicycle's default (configs/electric_bicycle/common.toml)
MODEL = "models/yolox_nano.onnx"
SMALL = SCALE < 0.1
RESOLUTIONS = {"640x360": (640, 360)} if SMALL else {"640x360": (640, 360), "1280x720": (1280, 720)}
STEPS = [1] if SMALL else [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16]  # cameras at each step
SETTLE = 1.5   # s after cameras were added: connect, first keyframe, queues settle
WINDOW = 1.2 if SMALL else 4.0   # s measured
REFINE_SETTLE = 6.0  # s after a camera was stopped again: with WINDOW, the 10 s of p95 see N - 1 only
CLIP_FRAMES = FPS if SMALL else 4 * FPS
PHOTO = "coco/000000007816.jpg"  # a motorbike: detections on every frame
MAX_DROP = 0.01
MAX_P95_MS = 1000.0
MIN_RATE = 0.95
VARIANTS = ["engine", "plain"]


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    """resolution -> RTSP URL (a server per resolution, for the whole module)."""
    from tests.support.clips import make_clip
    from tests.support.rtsp import RtspServer, RtspUnavailable

    folder = tmp_path_factory.mktemp("cameras")
    servers = {}
    try:
        for name, size in RESOLUTIONS.items():
            clip = make_clip(folder / f"cam_{name}.ts", frames=CLIP_FRAMES, size=size, fps=FPS, image=PHOTO,
                             container="mpegts")
            servers[name] = RtspServer(file=clip)
    except RtspUnavailable as exc:
        pytest.skip(str(exc))
    yield {name: s.url for name, s in servers.items()}
    for s in servers.values():
        s.close()


# -- the two programs, behind one interface: add(url), stats() -> [per camera dict], pid, close() -------
class Engine:
    def __init__(self, variables: dict | None = None):
        import requests

        self.http = requests.Session()
        self.state = tempfile.TemporaryDirectory(prefix="bench-cameras-state-")
        vars_file = write_vars({"interval": INTERVAL, "model": MODEL, **(variables or {})})
        app = APPS / "cameras"
        try:
            cmd = [*engine_cmd(app / "cameras.toml", app, vars_file), "-p", str(ROOT / "plugins" / "simple_det_classify"),
                   "--state-dir", self.state.name]
            self.server = Server(cmd, env=engine_env(), name="cameras engine", timeout=120)
        finally:
            os.unlink(vars_file)
        self.pid = self.server.proc.pid
        self.ids: list[str] = []
        deadline = time.monotonic() + 120  # every worker up, the detector loaded (plain_cameras.py waits alike)
        while self.http.get(f"{self.server.url}/readyz", timeout=30).status_code != 200:
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the cameras engine was not ready within 120 s")
            time.sleep(0.1)

    def add(self, url: str) -> None:
        cid = f"cam{len(self.ids)}"
        r = self.http.post(f"{self.server.url}/start/{quote(url, safe='')}", params={"id": cid}, timeout=30)
        assert r.status_code < 300, r.text
        self.ids.append(cid)

    @property
    def count(self) -> int:
        return len(self.ids)

    def remove(self) -> None:
        r = self.http.post(f"{self.server.url}/stop/{self.ids.pop()}", timeout=30)
        assert r.status_code < 300, r.text

    def stats(self) -> list[dict]:
        listed = {s["id"]: s for s in self.http.get(f"{self.server.url}/list", timeout=30).json()}
        return [listed.get(cid, {"id": cid, "state": "missing"}) for cid in self.ids]

    def close(self) -> None:
        self.server.stop()
        self.state.cleanup()


class Plain:
    def __init__(self):
        cmd = [sys.executable, str(ROOT / "benchmarks" / "plain_cameras.py"), "--model", MODEL,
               "--interval", str(INTERVAL)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=engine_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        line = self.proc.stdout.readline()
        assert line.startswith("READY"), f"plain_cameras.py did not start: {line!r}"
        self.pid = self.proc.pid
        self.count = 0

    def _ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def add(self, url: str) -> None:
        self.count = self._ask(f"add {url}")["id"] + 1

    def remove(self) -> None:
        self.count = self._ask("remove")["cameras"]

    def stats(self) -> list[dict]:
        return self._ask("stats")["cameras"]

    def close(self) -> None:
        try:
            self._ask("quit")
        finally:
            self.proc.wait(30)


def step(program, n: int) -> dict:
    """Measure ``n`` cameras (already added) over WINDOW s: the step's figures and whether it held."""
    before, cpu0, t0 = program.stats(), tree_cpu(program.pid), time.monotonic()
    time.sleep(WINDOW)
    after, cpu1, t1 = program.stats(), tree_cpu(program.pid), time.monotonic()
    seconds = t1 - t0
    frames = sum(a.get("frames", 0) - b.get("frames", 0) for a, b in zip(after, before))
    dropped = sum(a.get("dropped", 0) - b.get("dropped", 0) for a, b in zip(after, before))
    p95s = [a.get("latency_p95_ms") for a in after]
    states = [a.get("state") for a in after]
    drop = dropped / frames if frames else 1.0
    p95 = None if None in p95s else max(p95s)
    rate = frames / (n * seconds)  # decoded frames/s per camera
    why = []
    if any(s != "running" for s in states):
        why.append(f"states {states}")
    if drop > MAX_DROP:
        why.append(f"dropped {100 * drop:.1f}%")
    if p95 is None or p95 > MAX_P95_MS:
        why.append("no result in the window" if p95 is None else f"p95 {p95:.0f} ms")
    if frames + n < MIN_RATE * FPS * n * seconds:  # a frame per camera of slack: the window's edges
        why.append(f"decoded {rate:.1f} fps per camera")
    return {"cameras": n, "held": not why, "why": "; ".join(why), "drop_pct": round(100 * drop, 2),
            "p95_ms": p95, "p50_ms": max((a.get("latency_p50_ms") or 0) for a in after),
            "fps_per_camera": round(rate, 2), "cores": round((cpu1 - cpu0) / seconds, 2),
            "frames": frames, "dropped": dropped}


def ramp(variant: str, url: str, variables: dict | None = None) -> dict:
    """Add cameras until a step does not hold (``STEPS``); when that step added more than one camera,
    one is stopped again and N - 1 measured. ``variables``: the engine app's template variables
    (``interval``, ``cloned``, ``threads``, ``queue_size``, ``codec_threads``) to try a setting."""
    program = Engine(variables) if variant == "engine" else Plain()
    steps: list[dict] = []
    try:
        held = 0
        for n in STEPS:
            while program.count < n:
                program.add(url)
            time.sleep(SETTLE)
            steps.append(step(program, n))
            if not steps[-1]["held"]:
                if n - held > 1:
                    program.remove()
                    time.sleep(REFINE_SETTLE)
                    steps.append(step(program, n - 1))
                break
            held = n
    finally:
        program.close()
    held = max([s["cameras"] for s in steps if s["held"]] + [0])
    return {"rate": float(held), "held": held, "capped": held == STEPS[-1], "steps": steps}


@pytest.mark.benchmark(group="cameras")
@pytest.mark.parametrize("resolution,variant", [(r, v) for r in RESOLUTIONS for v in VARIANTS])
def test_cameras(benchmark, cameras, resolution, variant):
    result = benchmark.pedantic(ramp, args=(variant, cameras[resolution]), rounds=1, iterations=1)
    assert result["steps"], "no step ran"
    first = result["steps"][0]
    assert first["frames"] > 0 and first["p95_ms"] is not None, f"{variant}: one camera gave nothing: {first}"
    benchmark.extra_info.update({"variant": variant, "round": 1, "unit": "cameras", "resolution": resolution,
                                 "fps": FPS, "interval": INTERVAL, "settle_s": SETTLE, "window_s": WINDOW,
                                 "max_cameras": STEPS[-1], **result})
