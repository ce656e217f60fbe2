"""simple_det_classify end to end with the real YOLOX-nano and MobileNetV2, as ``.onnx`` files
(onnxruntime) and ``.mge`` files (megenginelite).

- The batching Classify node alone (``megflow_mp.testing.run_node``): one batch mixing frames of
  several streams gives every frame its own results.
- ``configs/simple_det_classify/video_cpu.toml`` through a real VideoServer: two clips at once (a
  cat, a motorbike), each stream's messages complete, in frame order, with its own objects.
- ``video_test.toml`` (VideoInput over files) and ``image_cpu.toml`` (ImageServer).
The shipped configs are used as they are; the tests pick models, port and paths with ``--dynamic``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from tests.integration.conftest import ROOT, drain, free_port, run_cli, start_server
from tests.support.clips import data_dir, make_clip

from megflow_mp import Envelope
from megflow_mp.plugins import load_registry
from megflow_mp.testing import FLUSH, run_node

DATA = data_dir()  # ../shared/data, or under $MEGFLOW_MP_SHARED
PLUGINS = "plugins/simple_det_classify"
MODELS = {"onnx": {"det_model": "models/yolox_nano.onnx", "cls_model": "models/mobilenet_v2_1.0_224_fp32.onnx"},
          "mge": {"det_model": "models/mge/yolox_nano.mge", "cls_model": "models/mge/mobilenet_v2_1.0_224_fp32.mge"}}
CAT_CLASSES = {"tabby, tabby cat", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat, Siamese"}
BIKES = "coco/000000007386.jpg"  # a motorbike and a bicycle
FRAMES = 12


def write_vars(path: Path, **values) -> Path:
    """A ``--dynamic`` variables file (JSON strings and lists are valid TOML values)."""
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


def photo(name: str) -> np.ndarray:
    img = cv2.imread(str(DATA / name))
    assert img is not None, DATA / name
    return img


@pytest.fixture(scope="module")
def registry():
    return load_registry(ROOT / PLUGINS)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A cat sliding across the frame, and the motorbike photo standing still (YOLOX-nano finds the
    motorbike in every frame when it is not moving)."""
    d = tmp_path_factory.mktemp("det_classify_clips")
    return {"cat": make_clip(d / "cat.mp4", frames=FRAMES),
            "bikes": make_clip(d / "bikes.mp4", frames=FRAMES, image=BIKES, motion="static")}


# -- the batching node, in-process ----------------------------------------------------------------------


def test_one_batch_mixing_streams_gives_each_frame_its_own_results(registry):
    cat, parrot = photo("images/cat_720p.jpg"), photo("images/parrot.jpg")

    def frame(stream, index, crops):
        return Envelope.pack({"objects": [{"box": [0, 0, 1, 1], "label": "x", "score": 1.0} for _ in crops],
                              "crops": crops}, info={"from_addr": stream, "partial_id": index})

    inputs = [frame(0, 5, [cat]), frame(1, 5, [parrot, cat]), frame(0, 6, []), frame(1, 6, [parrot])]
    expected = [["cat"], ["macaw", "cat"], [], ["macaw"]]
    for max_batch, sizes in [(8, [4, 4, 4, 4]), (3, [3, 3, 3, 1])]:
        args = {"model": MODELS["onnx"]["cls_model"], "max_batch": max_batch, "wait_time": 0, "topk": 2}
        out = run_node("Classify", args=args, inputs={"inp": inputs}, registry=registry)["out"]
        assert [(e.from_addr, e.partial_id) for e in out] == [(0, 5), (1, 5), (0, 6), (1, 6)]
        assert [e.msg["batch"] for e in out] == sizes
        for envelope, want in zip(out, expected):
            assert "crops" not in envelope.msg and len(envelope.msg["objects"]) == len(want)
            for obj, kind in zip(envelope.msg["objects"], want):
                top = obj["classes"][0]["label"]
                assert len(obj["classes"]) == 2
                assert top in CAT_CLASSES if kind == "cat" else top == "macaw", (envelope.from_addr, obj)


def test_a_flush_marker_ends_a_batch_and_a_message_without_crops_is_refused(registry):
    cat = photo("images/cat.bmp")
    one = Envelope.pack({"objects": [{"box": [0, 0, 1, 1]}], "crops": [cat]}, info={"from_addr": 0, "partial_id": 0})
    two = Envelope.pack({"objects": [], "crops": []}, info={"from_addr": 1, "partial_id": 0})
    args = {"model": MODELS["onnx"]["cls_model"], "max_batch": 8, "wait_time": 0}
    out = run_node("Classify", args=args, inputs={"inp": [one, FLUSH, two]}, registry=registry)["out"]
    assert [e.msg["batch"] for e in out] == [1, 1]
    with pytest.raises(ValueError, match="expected messages with 'objects' and 'crops'"):
        run_node("Classify", args=args, inputs={"inp": [{"data": cat}]}, registry=registry)
    with pytest.raises(ValueError, match="max_batch >= 1"):
        run_node("Classify", args={**args, "max_batch": 0}, inputs={"inp": []}, registry=registry)


def test_crop_cuts_each_widened_box_and_drops_tiny_ones(registry):
    frame = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    objects = [{"box": [10.0, 20.0, 50.0, 60.0], "label": "cat", "score": 0.9},
               {"box": [190.0, 90.0, 199.0, 99.5], "label": "dog", "score": 0.8},    # 9x9 -> ~10x10, cut at the edge
               {"box": [5.0, 5.0, 8.0, 30.0], "label": "cup", "score": 0.7}]         # 3 px wide: dropped
    args = {"expand": 1.1, "min_size": 8}
    inputs = {"inp": [{"data": frame, "objects": objects}]}
    (out,) = run_node("Crop", args=args, inputs=inputs, registry=registry)["out"]
    msg = out.msg
    assert [o["label"] for o in msg["objects"]] == ["cat", "dog"]
    assert np.array_equal(msg["crops"][0], frame[18:62, 8:52])  # 40x40 box widened by 10% about (30, 40)
    assert np.array_equal(msg["crops"][1], frame[89:100, 189:200])


# -- whole apps -------------------------------------------------------------------------------------------


def check_stream(messages: list[dict], sid: int, kind: str) -> None:
    """Every frame once, in order, with this stream's objects: cats (classified as a cat) in the cat
    clip, the motorbike (and never a cat) in the other."""
    assert [m["frame"] for m in messages] == list(range(FRAMES)), f"stream {sid}"
    assert all(m["stream"] == sid and m["batch"] >= 1 for m in messages)
    labels = [{o["label"] for o in m["objects"]} for m in messages]
    if kind == "cat":
        assert all("cat" in found for found in labels), labels
        cats = [o for m in messages for o in m["objects"] if o["label"] == "cat"]
        assert all(o["classes"][0]["label"] in CAT_CLASSES for o in cats), cats
        assert not any(found & {"motorbike", "bicycle"} for found in labels), labels
    else:
        assert sum("motorbike" in found for found in labels) >= FRAMES - 2, labels
        assert not any("cat" in found for found in labels), labels
        assert all(o["classes"][0]["label"] not in CAT_CLASSES for m in messages for o in m["objects"])


def wait_messages(url: str, sid: int, count: int, timeout: float = 60) -> list[dict]:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += [json.loads(m) for m in requests.get(f"{url}/get_msgs/{sid}", timeout=10).json()]
        time.sleep(0.05)
    return got


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(MODELS))
def test_video_service_two_streams_at_once_each_get_their_own_results(tmp_path, clips, fmt):
    dyn = write_vars(tmp_path / "vars.toml", port=free_port(), allow_dirs=[str(clips["cat"].parent)], **MODELS[fmt])
    proc, url = start_server(PLUGINS, extra=("-c", "configs/simple_det_classify/video_cpu.toml", "--dynamic", dyn))
    try:
        ids = {}
        for kind in ["cat", "bikes"]:
            r = requests.post(f"{url}/start/{requests.utils.quote(str(clips[kind]), safe='')}", timeout=30)
            assert r.status_code == 200 and r.text.startswith("start stream whose id is "), r.text
            ids[kind] = int(r.text.rsplit(" ", 1)[1])
        for kind, sid in ids.items():
            check_stream(wait_messages(url, sid, FRAMES), sid, kind)
        listed = {s["id"]: s for s in requests.get(f"{url}/list", timeout=10).json()}
        assert all(listed[sid]["frames"] == FRAMES for sid in ids.values())
    finally:
        drain(proc)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(MODELS))
def test_video_test_runs_every_file_then_ends(tmp_path, clips, fmt):
    dyn = write_vars(tmp_path / "vars.toml", urls=[str(clips["cat"]), str(clips["bikes"])], **MODELS[fmt])
    r = run_cli("run", "-c", "configs/simple_det_classify/video_test.toml", "-p", PLUGINS, "--dynamic", dyn,
                timeout=120)
    assert r.returncode == 0, r.stderr
    per_stream: dict[int, list] = {0: [], 1: []}
    for line in r.stderr.splitlines():
        if "INFO stream " in line:
            msg = json.loads(line.split(": ", 1)[1])
            per_stream[msg["stream"]].append(msg)
    check_stream(per_stream[0], 0, "cat")
    check_stream(per_stream[1], 1, "bikes")


@pytest.mark.slow
def test_image_service_answers_objects_and_classes_as_json(tmp_path):
    dyn = write_vars(tmp_path / "vars.toml", port=free_port(), **MODELS["onnx"])
    proc, url = start_server(PLUGINS, extra=("-c", "configs/simple_det_classify/image_cpu.toml", "--dynamic", dyn))
    try:
        r = requests.post(f"{url}/analyze/street", data=(DATA / BIKES).read_bytes(),
                          headers={"Content-Type": "image/*"}, timeout=60)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
        answer = r.json()
        assert answer["extra_data"] == "street" and {"motorbike", "bicycle"} <= {o["label"] for o in answer["objects"]}
        r = requests.post(f"{url}/analyze/cat", data=(DATA / "images" / "cat_720p.jpg").read_bytes(), timeout=60)
        cats = [o for o in r.json()["objects"] if o["label"] == "cat"]
        assert cats and cats[0]["classes"][0]["label"] in CAT_CLASSES
        assert requests.post(f"{url}/analyze/x", data=b"no image here", timeout=30).status_code == 400
    finally:
        drain(proc)
