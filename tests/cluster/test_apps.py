"""Shipped apps on a real Ray cluster give what they give on one machine.

simple_classification's ``image_test.toml`` (ImageInput over photos) with its classifier on machine
``b``: the same results file. electric_bicycle's ``video_test.toml`` (and the ``common.toml`` it
includes) with its detector on ``b``, a real redis-server: the same alerts logged and pushed.
cat_finder's ``video_test.toml`` with its detector and re-id model on ``b`` (a cat registered by its
``image_test.toml`` first): the same notification.

simple_det_classify's ``video_test.toml`` (VideoInput over two clips) with its detector placed on
machine ``b`` and its classifier on the driver's machine: every frame crosses machines twice (to the
detector, back to the crops), and the messages equal those of the same run on one machine (boxes,
labels, classes; the batch a frame was classified in may differ, so it is left out). Its
``image_cpu.toml`` (ImageServer) with the classifier on ``b``: the same answer to the same photo.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.cluster.conftest import ROOT, app_processes
from tests.integration.conftest import drain, free_port, start_server
from tests.support.clips import data_dir, load_image, make_clip
from tests.support.cluster import placed
from tests.support.fixtures import redis_server  # noqa: F401

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


def run_cli(config: Path, plugins: str, variables: dict, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    dyn = tmp_path / "vars.toml"
    dyn.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in variables.items()))
    r = subprocess.run([MEGFLOW, "run", str(config), "-p", plugins, "--dynamic", str(dyn), "--no-metrics", *extra],
                       capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.slow
def test_classification_image_test_same_results_with_its_classifier_on_another_machine(ray_cluster, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ["cat_720p.jpg", "parrot.jpg", "hot_dog.jpg"]:
        shutil.copy(data_dir() / "images" / name, photos / name)
    app = ROOT / "configs" / "simple_classification" / "image_test.toml"
    spread = tmp_path / "image_test.toml"
    spread.write_text(placed(app.read_text(), "classify", ONB))
    results = []
    for config, extra in ((app, ()), (spread, ("--ray", ray_cluster.address))):
        out = tmp_path / f"results-{len(results)}.jsonl"
        run_cli(config, str(ROOT / "plugins" / "simple_classification"), {"urls": [str(photos)], "output": str(out)},
                tmp_path, *extra)
        lines = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda a: a["extra_data"])
        results.append([(a["extra_data"], [t["label"] for t in a["top"]]) for a in lines])
    assert len(results[0]) == 3 and results[1] == results[0]


@pytest.mark.slow
def test_electric_bicycle_video_test_same_alerts_with_its_detector_on_another_machine(ray_cluster, tmp_path,
                                                                                      redis_server):  # noqa: F811
    folder = ROOT / "configs" / "electric_bicycle"
    spread = tmp_path / "spread"
    spread.mkdir()
    shutil.copy(folder / "video_test.toml", spread / "video_test.toml")
    (spread / "common.toml").write_text(placed((folder / "common.toml").read_text(), "det", ONB))
    moto = make_clip(tmp_path / "moto.mp4", frames=24, size=(480, 360), image="coco/000000007816.jpg", motion="enter")
    trike = make_clip(tmp_path / "trike.mp4", frames=24, size=(480, 360),
                      image=load_image("coco/000000007386.jpg")[13:400, 123:600], motion="enter")
    alerts = []
    for i, (config, extra) in enumerate(((folder / "video_test.toml", ()),
                                         (spread / "video_test.toml", ("--ray", ray_cluster.address)))):
        variables = {"urls": [str(moto), str(trike)], "interval": 2, "redis_port": redis_server.port,
                     "redis_prefix": f"run{i}.", "spool_dir": str(tmp_path / f"spool{i}")}
        r = run_cli(config, str(ROOT / "plugins" / "electric_bicycle"), variables, tmp_path, *extra)
        logged = sorted((json.loads(ln.split(": ", 1)[1]) for ln in r.stderr.splitlines() if "INFO stream " in ln),
                        key=json.dumps)
        pushed = sorted((json.loads(m) for m in redis_server.client().lrange(f"run{i}.alerts", 0, -1)), key=json.dumps)
        assert pushed == logged
        alerts.append(logged)
    assert [a["stream"] for a in alerts[0]] == [0, 1] and alerts[1] == alerts[0]


@pytest.mark.slow
def test_cat_finder_video_test_same_notification_with_its_models_on_another_machine(ray_cluster, tmp_path,
                                                                                     redis_server):  # noqa: F811
    folder, plugins = ROOT / "configs" / "cat_finder", str(ROOT / "plugins" / "cat_finder")
    cats = tmp_path / "cats"
    cats.mkdir()
    shutil.copy(data_dir() / "coco" / "000000000139.jpg", cats / "decoy.jpg")
    shutil.copy(data_dir() / "images" / "cat_720p.jpg", cats / "tom.jpg")
    base = {"redis_port": redis_server.port, "spool_dir": str(tmp_path / "spool")}
    run_cli(folder / "image_test.toml", plugins, {**base, "cats_dir": str(cats)}, tmp_path)  # registers tom
    spread = tmp_path / "spread"
    spread.mkdir()
    shutil.copy(folder / "video_test.toml", spread / "video_test.toml")
    half = "placement = { resources = { site_b = 0.5 } }"  # both models on b: half of its one site_b each
    (spread / "fence.toml").write_text(placed(placed((folder / "fence.toml").read_text(), "det", half), "reid", half))
    clip = make_clip(tmp_path / "tom.mp4", frames=25, motion="exit", image="images/cat_720p.jpg")
    notes = []
    for config, extra in ((folder / "video_test.toml", ()), (spread / "video_test.toml", ("--ray", ray_cluster.address))):
        r = run_cli(config, plugins, {**base, "videos": [str(clip)]}, tmp_path, *extra)
        notes.append([json.loads(ln.split(": ", 1)[1]) for ln in r.stderr.splitlines() if "INFO stream 0: {" in ln])
    assert len(notes[0]) == 1 and notes[0][0]["name"] == "tom"
    assert notes[1] == notes[0]
