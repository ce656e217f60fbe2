"""What a new user meets first: the shipped apps as ``megflow-mp run CONFIG``, and start-up failures
that are one clear line naming the node and what to do (exit 1, no traceback)."""

from __future__ import annotations

import socket

from tests.integration.conftest import ROOT, run_cli
from tests.support.clips import data_dir


def assert_one_clear_line(r, *needles: str) -> str:
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("[megflow-mp] error:")]
    assert len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_port_in_use_is_one_line_naming_the_node(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "vars.toml").write_text(f"port = {port}\n")
        r = run_cli("run", "configs/simple_classification/image_cpu.toml", "--dynamic", tmp_path / "vars.toml",
                    cwd=ROOT, timeout=120)
    line = assert_one_clear_line(r, "node 'source'", f"127.0.0.1:{port}", "Address already in use", "`port`")
    assert "could not start" in line


def test_missing_model_file_is_one_line_naming_the_node(tmp_path):
    (tmp_path / "vars.toml").write_text('model = "models/not_there.onnx"\nport = 0\n')
    r = run_cli("run", "configs/simple_classification/image_cpu.toml", "--dynamic", tmp_path / "vars.toml",
                cwd=ROOT, timeout=120)
    assert_one_clear_line(r, "node 'classify'", "models/not_there.onnx: model file not found")


def test_check_finds_the_missing_model_before_run(tmp_path):
    (tmp_path / "vars.toml").write_text('model = "models/not_there.onnx"\n')
    r = run_cli("check", "configs/simple_classification/image_cpu.toml", "--dynamic", tmp_path / "vars.toml",
                cwd=ROOT, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip() == ("megflow-mp: error: configs/simple_classification/image_cpu.toml: graphs[0].nodes[0].model: "
                                f"model file not found: models/not_there.onnx (relative to the working directory {ROOT})")


def test_malformed_stream_url_is_one_line_naming_the_node(tmp_path):
    (tmp_path / "vars.toml").write_text('urls = ["rtsp//127.0.0.1:8554/cam"]\n')
    r = run_cli("run", "configs/simple_det_classify/video_test.toml", "--dynamic", tmp_path / "vars.toml",
                cwd=ROOT, timeout=120)
    assert_one_clear_line(r, "node 'tutorial_02/source'", "well-formed URL", "rtsp//127.0.0.1:8554/cam")


def test_selfcheck_passes_from_another_directory(tmp_path):
    r = run_cli("selfcheck", cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "logical_test pass" in r.stdout


def test_a_shipped_batch_app_runs_with_its_config_alone(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes((data_dir() / "images" / "cat_720p.jpg").read_bytes())
    out = tmp_path / "results.jsonl"
    (tmp_path / "vars.toml").write_text(f'urls = ["{photos}"]\noutput = "{out}"\n')
    r = run_cli("run", "configs/simple_classification/image_test.toml", "--dynamic", tmp_path / "vars.toml",
                cwd=ROOT, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "cat" in out.read_text().lower()
