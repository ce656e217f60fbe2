"""simple_classification end to end with the real MobileNetV2, as a ``.onnx`` file (onnxruntime) and
as a ``.mge`` file (megenginelite): the HTTP service of ``configs/simple_classification/image_cpu.toml``
through a real uvicorn server, and the pipeline test ``image_test.toml`` over a directory of photos.
The shipped configs are used as they are; the tests pick the model, port and paths with ``--dynamic``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import ROOT, drain, free_port, run_cli, start_server
from tests.support.clips import data_dir

DATA = data_dir()  # ../shared/data, or under $MEGFLOW_MP_SHARED
PLUGINS = "plugins/simple_classification"
MODELS = {"onnx": "models/mobilenet_v2_1.0_224_fp32.onnx", "mge": "models/mge/mobilenet_v2_1.0_224_fp32.mge"}
CAT_CLASSES = {"tabby, tabby cat", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat, Siamese"}
EXPECTED_TOP1 = {"cat_720p": CAT_CLASSES, "cat": CAT_CLASSES, "parrot": {"macaw"},
                 "hot_dog": {"hotdog, hot dog, red hot"}}


def write_vars(path: Path, **values) -> Path:
    """A ``--dynamic`` variables file (JSON strings and lists are valid TOML values)."""
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


def check_top5(answer: dict, extra_data: str, top1: set[str]) -> None:
    top = answer["top"]
    assert answer["extra_data"] == extra_data
    assert len(top) == 5 and all(set(t) == {"label", "score"} for t in top)
    scores = [t["score"] for t in top]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    assert top[0]["label"] in top1, top


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(MODELS))
def test_image_service_answers_the_top5_labels_as_json(tmp_path, fmt):
    dyn = write_vars(tmp_path / "vars.toml", model=MODELS[fmt], port=free_port())
    proc, url = start_server(PLUGINS, extra=("-c", "configs/simple_classification/image_cpu.toml", "--dynamic", dyn))
    try:
        for photo in ["cat_720p.jpg", "cat.bmp", "parrot.jpg"]:  # curl --data-binary @photo -H Content-Type:image/*
            r = requests.post(f"{url}/analyze/{photo}", data=(DATA / "images" / photo).read_bytes(),
                              headers={"Content-Type": "image/*"}, timeout=60)
            assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
            check_top5(r.json(), photo, EXPECTED_TOP1[Path(photo).stem])
        r = requests.post(f"{url}/analyze/notes", data=b"this is not an image", headers={"Content-Type": "image/*"},
                          timeout=30)
        assert r.status_code == 400 and "not a decodable image" in r.json()["detail"]
    finally:
        drain(proc)


@pytest.mark.slow
def test_image_test_records_one_line_per_photo_and_both_formats_agree(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ["cat_720p.jpg", "cat.bmp", "parrot.jpg", "hot_dog.jpg"]:
        shutil.copy(DATA / "images" / name, photos / name)
    top1 = {}
    for fmt, model in MODELS.items():
        out = tmp_path / fmt / "results.jsonl"
        dyn = write_vars(tmp_path / f"{fmt}.toml", model=model, urls=[str(photos)], output=str(out))
        r = run_cli("run", "-c", "configs/simple_classification/image_test.toml", "-p", PLUGINS, "--dynamic", dyn,
                    timeout=120)
        assert r.returncode == 0, r.stderr
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(a["extra_data"] for a in lines) == sorted(EXPECTED_TOP1)
        for answer in lines:
            check_top5(answer, answer["extra_data"], EXPECTED_TOP1[answer["extra_data"]])
            logged = f"INFO {answer['extra_data']}: {json.dumps(answer)}"
            assert logged in r.stderr  # ImageInput logs every result that comes back
        assert "4 images, 4 results" in r.stderr
        top1[fmt] = {a["extra_data"]: (a["top"][0]["label"], a["top"][0]["score"]) for a in lines}
    assert {k: v[0] for k, v in top1["onnx"].items()} == {k: v[0] for k, v in top1["mge"].items()}
    assert all(abs(top1["onnx"][k][1] - top1["mge"][k][1]) < 1e-3 for k in top1["onnx"])
