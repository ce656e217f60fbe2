"""Projects made by ``python -m megflow_mp.quickstart`` (piped answers or flags), then run as real
apps on free ports and asked over HTTP with the shared photos, a clip, and the real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from tests.integration.conftest import ROOT, drain, env, free_port, run_cli, start_cli
from tests.support.clips import data_dir, load_image, make_clip

DATA = data_dir()
MODELS = DATA.parent / "models"
LABELS = MODELS / "labels" / "imagenet_labels.txt"
CAT = DATA / "images" / "cat_720p.jpg"
CATS = {"Egyptian cat", "tiger cat", "tabby", "Persian cat", "Siamese cat"}


def quickstart(*args, answers: str = "", cwd=None) -> subprocess.CompletedProcess:
    """Run the quickstart command with ``answers`` (one a line) on its stdin; it must succeed."""
    done = subprocess.run([sys.executable, "-m", "megflow_mp.quickstart", *map(str, args)], input=answers,
                          capture_output=True, text=True, timeout=120, env=env(), cwd=cwd or ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Project created, read " in done.stdout
    return done


def lines(*answers) -> str:
    return "".join(f"{a}\n" for a in answers)


def serve(project: Path, cwd=None, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Run ``project`` as its README says (the plugins are the config's directory); return the
    process and the URL its server logs."""
    proc = start_cli("run", project / "config.toml", cwd=cwd)
    deadline = time.monotonic() + timeout
    for line in iter(proc.stderr.readline, ""):
        if "listening on" in line:
            return proc, line.split("listening on ")[1].split()[0]
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError("the project's server did not start: " + proc.communicate()[1])


def set_values(config: Path, **values) -> None:
    """Change ``key = ...`` lines of the generated config, as a user adjusting it would."""
    text = config.read_text()
    for key, value in values.items():
        start = text.index(f"\n    {key} = ") + 1
        end = text.index("\n", start)
        text = text[:start] + f"    {key} = {value}" + text[end:]
    config.write_text(text)


def post_image(url: str, path: Path = CAT, name: str = "cat") -> requests.Response:
    r = requests.post(f"{url}/analyze/{name}", data=path.read_bytes(), headers={"Content-Type": "image/*"}, timeout=60)
    assert r.status_code == 200, r.text
    return r


def test_swagger_ui_is_served(tmp_path):
    quickstart("--type", "image", "--port", free_port(), answers=lines(tmp_path / "app"))
    proc, url = serve(tmp_path / "app")
    try:
        docs = requests.get(f"{url}/docs", timeout=30)
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert "/analyze/{extra_data}" in requests.get(f"{url}/openapi.json", timeout=30).json()["paths"]
    finally:
        drain(proc)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "mge"])
def test_modelserving_serves_the_model_with_top_k_labels(tmp_path, fmt):
    model = MODELS / "mobilenet_v2_1.0_224_fp32.onnx" if fmt == "onnx" else \
        MODELS / "mge" / "mobilenet_v2_1.0_224_fp32.mge"
    project = tmp_path / "app"
    if fmt == "onnx":  # piped answers; the .onnx input is "input", so the name is asked again
        done = quickstart("--port", free_port(), "--labels", LABELS,
                          answers=lines(project, "modelserving", "data", model, ""))
        assert "its input is 'input'" in done.stdout
    else:
        quickstart("--path", project, "--type", "modelserving", "--input-name", "data", "--model", model,
                   "--labels", LABELS, "--port", free_port())
    # MobileNetV2 wants RGB in -1..1: what the generated config leaves to the user
    set_values(project / "config.toml", channels='"RGB"', mean="[127.5, 127.5, 127.5]", std="[127.5, 127.5, 127.5]")
    proc, url = serve(project)
    try:
        answer = post_image(url).json()
        assert answer["extra_data"] == "cat"
        assert answer["input"] == {"name": "input" if fmt == "onnx" else "data", "shape": [1, 3, 224, 224],
                                   "layout": "NCHW"}
        (out,) = answer["outputs"]
        assert out["shape"] == [1, 1001] and len(out["values"]) == 1001 and not out["truncated"]
        assert sum(out["values"]) == pytest.approx(1.0, abs=1e-3)  # the model's softmax
        top = answer["topk"]
        assert len(top) == 5 and top[0]["label"] in CATS and top[0]["score"] > 0.5
        assert top[0]["score"] == pytest.approx(max(out["values"]))
        assert top[0]["label"] == LABELS.read_text().splitlines()[top[0]["index"]]
        other = post_image(url, DATA / "images" / "hot_dog.jpg", "food").json()
        assert other["topk"][0]["label"] not in CATS
    finally:
        drain(proc)


def test_image_project_answers_the_marked_image(tmp_path):
    quickstart("--port", free_port(), answers=lines(tmp_path / "app", "image"))
    proc, url = serve(tmp_path / "app")
    try:
        r = post_image(url, name="photo")
        assert r.headers["content-type"] == "image/jpeg"
        got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        sent = load_image(CAT)
        assert got.shape == sent.shape
        h, w = got.shape[:2]
        border = got[h // 2, 0].astype(int)  # the frame Process draws, green in BGR
        assert border[1] > 180 and border[0] < 90 and border[2] < 90
        inside = np.abs(got[h // 4: -h // 4, w // 4: -w // 4].astype(int) - sent[h // 4: -h // 4, w // 4: -w // 4])
        assert inside.mean() < 8  # the rest of the picture came back (JPEG-close)
    finally:
        drain(proc)


@pytest.mark.slow
def test_video_project_counts_the_frames_of_a_stream(tmp_path):
    quickstart("--path", tmp_path / "app", "--type", "video", "--port", free_port())
    clip = make_clip(tmp_path / "clip.mp4", frames=20)
    proc, url = serve(tmp_path / "app", cwd=tmp_path)  # allow_dirs = ["."]: files under tmp_path
    try:
        r = requests.post(f"{url}/start/{requests.utils.quote(str(clip), safe='')}", timeout=30)
        assert r.status_code == 200, r.text
        sid = int(r.text.rsplit(" ", 1)[1])
        messages, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:
            messages += [json.loads(m) for m in requests.get(f"{url}/get_msgs/{sid}", timeout=10).json()]
            state = next(s["state"] for s in requests.get(f"{url}/list", timeout=10).json() if s["id"] == sid)
            if state == "finished" and len(messages) == 20:
                break
            time.sleep(0.2)
        assert [m["frame"] for m in messages] == list(range(20))
        assert [m["count"] for m in messages] == list(range(1, 21))
        assert {(m["stream"], m["width"], m["height"]) for m in messages} == {(sid, 640, 360)}
    finally:
        drain(proc)


def test_custom_project_runs_its_graph_to_the_end(tmp_path):
    quickstart("--path", tmp_path / "app", "--yes", "--type", "custom")
    done = run_cli("run", tmp_path / "app" / "config.toml")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert [json.loads(line[len("sink "):]) for line in out if line.startswith("sink {")] == \
        [{"index": i} for i in range(10)]
    assert out[-1] == "sink done: 10 messages"


TEMPLATE = {
    "config.toml": """
        main = "service"
        [[graphs]]
        name = "inner"
        inputs = [{ name = "inp", cap = 4, ports = ["greet:inp"] }]
        outputs = [{ name = "out", cap = 4, ports = ["greet:out"] }]
            [[graphs.nodes]]
            name = "greet"
            ty = "##NODE_TYPE##"
        [[graphs]]
        name = "service"
        connections = [
          { cap = 4, ports = ["server:out", "inner:inp"] },
          { cap = 4, ports = ["server:inp", "inner:out"] },
        ]
            [[graphs.nodes]]
            name = "server"
            ty = "ImageServer"
            port = ##PORT##
            response = "json"
            [[graphs.nodes]]
            name = "inner"
            ty = "inner"
        """,
    "greet.py": """
        import json
        from megflow_mp import register

        @register(name="##NODE_TYPE##", inputs=["inp"], outputs=["out"])
        class Greet:
            def __init__(self, name, args): pass
            def exec(self):
                e = self.inp.recv()
                if e is None: return
                h, w = e.msg["data"].shape[:2]
                self.out.send(e.repack(json.dumps({"greeting": "##GREETING##", "size": [w, h]})))
        """,
    "README.md": "#### ##NODE_TYPE## says ##GREETING##\n",
}


def git(*args, cwd):
    subprocess.run(["git", *map(str, args)], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": "/dev/null"})


@pytest.mark.slow
def test_git_template_placeholders_are_asked_replaced_and_the_project_runs(tmp_path):
    repo = tmp_path / "template"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "README.md").write_text("the main branch is not the template\n")
    git("add", "README.md", cwd=repo)
    git("commit", "-q", "-m", "main", cwd=repo)
    git("checkout", "-q", "-b", "service", cwd=repo)
    for name, text in TEMPLATE.items():
        (repo / name).write_text(textwrap.dedent(text).lstrip())
    git("add", *TEMPLATE, cwd=repo)
    git("commit", "-q", "-m", "service template", cwd=repo)

    port = free_port()
    done = quickstart("--git", f"file://{repo}", "--set", f"PORT={port}",
                      answers=lines(tmp_path / "app", "service", "", "Hello", "hello from quickstart"))
    # the placeholders in order of first appearance (files in path order); PORT came from --set
    asked = [line for line in done.stdout.splitlines() if line.startswith("> Enter the value of ")]
    assert asked == [f"> Enter the value of ##{n}##." for n in ("NODE_TYPE", "NODE_TYPE", "GREETING")]
    assert "! an answer is required" in done.stdout
    project = tmp_path / "app"
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "config.toml", "greet.py"]
    assert (project / "README.md").read_text() == "#### Hello says hello from quickstart\n"
    proc, url = serve(project)
    try:
        assert url.endswith(f":{port}")
        answer = post_image(url).json()
        assert answer == {"greeting": "hello from quickstart", "size": list(load_image(CAT).shape[1::-1])}
    finally:
        drain(proc)
