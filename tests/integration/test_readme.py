"""The README's "Write your own node" example, taken from the README itself, runs as it says."""

from __future__ import annotations

import re

import cv2
import numpy as np
import requests

from tests.integration.conftest import ROOT, drain, free_port, start_cli, wait_listening
from tests.support.clips import data_dir


def readme_block(first_line: str) -> str:
    """The fenced code block of README.md whose first line starts with ``first_line``."""
    for block in re.findall(r"```\w*\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"no README block starts with {first_line!r}")


def write_example(tmp_path, response: str | None, node: str):
    (tmp_path / "plugins" / "blur").mkdir(parents=True)
    (tmp_path / "plugins" / "blur" / "blur.py").write_text(readme_block("# plugins/blur/blur.py"))
    config = readme_block("# configs/blur/blur.toml")
    port = free_port()
    config = config.replace("port = 8086", f"port = {port}" + (f', response = "{response}"' if response else ""))
    config = config.replace('ty = "Blur", k = 21', f'ty = "{node}", k = 21')
    (tmp_path / "configs" / "blur").mkdir(parents=True)
    (tmp_path / "configs" / "blur" / "blur.toml").write_text(config)
    return f"http://127.0.0.1:{port}"


def ask(url: str) -> tuple[np.ndarray, requests.Response]:
    photo = (data_dir() / "images" / "cat_720p.jpg").read_bytes()
    r = requests.post(f"{url}/analyze/tom", data=photo, headers={"Content-Type": "image/jpeg"}, timeout=60)
    return cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR), r


def test_the_blur_node_answers_a_blurred_jpeg_of_the_same_size(tmp_path):
    url = write_example(tmp_path, None, "Blur")
    proc, _ = wait_listening(start_cli("run", "configs/blur/blur.toml", cwd=tmp_path), timeout=60)
    try:
        original, r = ask(url)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert got.shape == original.shape
        sharpness = lambda img: cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()  # noqa: E731
        assert sharpness(got) < sharpness(original) / 4
    finally:
        drain(proc)


def test_the_brightness_node_answers_json(tmp_path):
    url = write_example(tmp_path, "json", "Brightness")
    proc, _ = wait_listening(start_cli("run", "configs/blur/blur.toml", cwd=tmp_path), timeout=60)
    try:
        original, r = ask(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert body["name"] == "tom"
        assert abs(body["mean"] - float(original.mean())) < 0.01
    finally:
        drain(proc)


def test_the_graph_program_runs_as_shown(tmp_path):
    import subprocess
    import sys

    (tmp_path / "program.py").write_text(readme_block("# a program running a graph"))
    r = subprocess.run([sys.executable, "program.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "['inp'] ['out']"
    assert lines[1:] == [f"{i} {float(i)}" for i in range(100)]
