"""people_counter (the guide "Write a detection app", docs/guide/detection-app.md) end to end with the
real YOLOX-nano: two clips at once through ``configs/people_counter/video_cpu.toml`` (three people
of a COCO photo standing still, and a cat), each stream counted on its own; the counter node alone
in-process (``megflow_mp.testing.run_node``) draws the boxes it counts."""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import pytest
import requests

from tests.integration.conftest import ROOT, drain, free_port, start_server
from tests.support.clips import data_dir, make_clip, render_frames

from megflow_mp.plugins import load_registry
from megflow_mp.testing import run_node

DATA = data_dir()
PLUGINS = "plugins/people_counter"
CONFIG = "configs/people_counter/video_cpu.toml"
PEOPLE = "coco/000000008021.jpg"  # three people; YOLOX-nano finds all three at score 0.4
FRAMES = 30


@pytest.fixture(scope="module")
def registry():
    return load_registry(ROOT / PLUGINS)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("people_clips")
    return {"people": make_clip(d / "people.mp4", frames=FRAMES, image=PEOPLE, motion="static"),
            "cat": make_clip(d / "cat.mp4", frames=FRAMES)}


def wait_messages(url: str, sid: int, count: int, timeout: float = 90) -> list[dict]:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += [json.loads(m) for m in requests.get(f"{url}/get_msgs/{sid}", timeout=10).json()]
        time.sleep(0.05)
    return got


def test_the_counter_draws_a_box_for_each_person_it_counts(registry):
    frame = next(render_frames(1, image=DATA / PEOPLE, motion="static"))
    (det,) = run_node("DetectPeople", args={"model": "models/yolox_nano.onnx"}, inputs={"inp": [{"data": frame}]},
                      registry=registry)["out"]
    people = det.msg["people"]
    assert len(people) == 3 and all(p["score"] >= 0.4 for p in people)
    out = run_node("CountPeople", inputs={"inp": [det]}, registry=registry)
    (message,) = out["out"]
    assert json.loads(message.msg) == {"stream": None, "frame": None, "people": 3, "seen": 3}
    (picture,) = out["frame"]
    drawn = picture.msg["data"]
    assert drawn.shape == frame.shape
    for p in people:  # the box's left edge, halfway down, is the overlay's green
        x0, y0, x1, y1 = (int(round(v)) for v in p["box"])
        b, g, r = drawn[(y0 + y1) // 2, min(x0 + 1, drawn.shape[1] - 1)]
        assert g > 150 and b < 80 and r < 80, (p, (b, g, r))
    assert not np.array_equal(drawn, frame)


@pytest.mark.slow
def test_each_stream_is_counted_on_its_own(tmp_path, clips):
    dyn = tmp_path / "vars.toml"
    dyn.write_text(f"port = {free_port()}\nallow_dirs = {json.dumps([str(clips['people'].parent)])}\n")
    proc, url = start_server(PLUGINS, extra=("-c", CONFIG, "--dynamic", dyn))
    try:
        ids = {}
        for kind in ("people", "cat"):
            r = requests.post(f"{url}/start/{requests.utils.quote(str(clips[kind]), safe='')}", timeout=30)
            assert r.status_code == 200, r.text
            ids[kind] = int(r.text.rsplit(" ", 1)[1])
        counted = {kind: wait_messages(url, sid, FRAMES) for kind, sid in ids.items()}
        for kind, sid in ids.items():
            assert [m["frame"] for m in counted[kind]] == list(range(FRAMES)), kind
            assert all(m["stream"] == sid for m in counted[kind])
        people = [m["people"] for m in counted["people"]]
        assert statistics.median(people) == 3 and all(2 <= n <= 4 for n in people), people
        assert 3 <= counted["people"][-1]["seen"] <= 6, counted["people"][-1]  # the same three, tracked
        assert all(m["people"] == 0 and m["seen"] == 0 for m in counted["cat"]), counted["cat"]
        listed = {s["id"]: s for s in requests.get(f"{url}/list", timeout=10).json()}
        assert all(listed[sid]["frames"] == FRAMES for sid in ids.values())
        stats = requests.get(f"{url}/view/{ids['people']}/stats", timeout=10).json()
        assert stats["frames_in"] == FRAMES  # every drawn frame reached the live view
    finally:
        drain(proc)
