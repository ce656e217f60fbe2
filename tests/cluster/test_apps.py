"""Shipped apps on a real Ray cluster give what they give on one machine.

simple_det_classify's ``video_test.toml`` (VideoInput over two clips) with its detector placed on
machine ``b`` and its classifier on the driver's machine: every frame crosses machines twice (to the
detector, back to the crops), and the messages equal those of the same run on one machine (boxes,
labels, classes; the batch a frame was classified in may differ, so it is left out). Its
``image_cpu.toml`` (ImageServer) with the classifier on ``b``: the same answer to the same photo.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.cluster.conftest import ROOT, app_processes
from tests.integration.conftest import drain, free_port, start_server
from tests.support.clips import data_dir, make_clip
from tests.support.cluster import placed

APP = "simple_det_classify"
PLUGINS = str(ROOT / "plugins" / APP)
MEGFLOW = str(Path(sys.executable).with_name("megflow-mp"))
ONB = "placement = { resources = { site_b = 1 } }"


def run_video_test(config: Path, urls: list[str], tmp_path: Path, *extra: str) -> dict:
    dyn = tmp_path / "vars.toml"
    dyn.write_text(f"urls = {json.dumps(urls)}\n")
    r = subprocess.run([MEGFLOW, "run", str(config), "-p", PLUGINS, "--dynamic", str(dyn), "--no-metrics", *extra],
                       capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    out = {}
    for line in r.stderr.splitlines():
        if "INFO stream " in line:
            msg = json.loads(line.split(": ", 1)[1])
            out[(msg["stream"], msg["frame"])] = [(o["label"], [round(v) for v in o["box"]],
                                                    [c["label"] for c in o["classes"]]) for o in msg["objects"]]
    return out


@pytest.mark.slow
def test_det_classify_video_test_same_messages_with_its_detector_on_another_machine(ray_cluster, tmp_path):
    clips = [str(make_clip(tmp_path / f"{kind}.mp4", frames=10, size=(640, 360), image=image))
             for kind, image in (("cat", "images/cat_720p.jpg"), ("bikes", "coco/000000007386.jpg"))]
    config = ROOT / "configs" / APP / "video_test.toml"
    alone = run_video_test(config, clips, tmp_path)
    spread = tmp_path / "video_test_cluster.toml"
    spread.write_text(placed(config.read_text(), "det", ONB))
    on_cluster = run_video_test(spread, clips, tmp_path, "--ray", ray_cluster.address)
    assert len(alone) == 20 and sum(len(v) for v in alone.values()) >= 20
    assert on_cluster == alone
    assert not app_processes(str(spread)) and not app_processes("megflow_mp.cluster.host")


@pytest.mark.slow
def test_image_service_same_answer_with_its_classifier_on_another_machine(ray_cluster, tmp_path):
    config = tmp_path / "image_cpu.toml"
    config.write_text(placed((ROOT / "configs" / APP / "image_cpu.toml").read_text(), "classify", ONB))
    photo = (data_dir() / "coco" / "000000007386.jpg").read_bytes()
    answers = []
    for extra in ((), ("--ray", ray_cluster.address)):
        dyn = tmp_path / "vars.toml"
        dyn.write_text(f"port = {free_port()}\n")
        proc, url = start_server(PLUGINS, extra=("-c", str(config), "--dynamic", str(dyn), *extra))
        try:
            r = requests.post(f"{url}/analyze/street", data=photo, headers={"Content-Type": "image/*"}, timeout=60)
            assert r.status_code == 200, r.text
            answers.append([(o["label"], [round(v) for v in o["box"]], [c["label"] for c in o["classes"]])
                            for o in r.json()["objects"]])
        finally:
            drain(proc)
    assert answers[0] and answers[1] == answers[0]
