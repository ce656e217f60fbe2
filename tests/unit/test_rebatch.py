"""Real batches from the shipped .onnx files, which declare N = 1 (megflow_mp.models.rebatch).

The rewritten graphs must give, for a batch, exactly what the file as shipped gives one image at a
time; a graph whose batch outputs differ (the person re-id net) must be refused and run in chunks.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from megflow_mp.errors import ModelError
from megflow_mp.models import Classifier, load_model
from megflow_mp.errors import RebatchError
from megflow_mp.models.rebatch import batch_mismatch, symbolic_batch
from tests.support.clips import data_dir

SHARED = data_dir().parent  # ../shared, or $MEGFLOW_MP_SHARED
MODELS, DATA = SHARED / "models", SHARED / "data"
CLS, YOLOX = MODELS / "mobilenet_v2_1.0_224_fp32.onnx", MODELS / "yolox_nano.onnx"
REID = MODELS / "person-reidentification-retail-0288.onnx"
PHOTOS = ["images/parrot.jpg", "images/pets.jpg", "images/owl.jpg", "images/hot_dog.jpg", "images/cat_720p.jpg"]


def photos() -> list[np.ndarray]:
    images = [cv2.imread(str(DATA / p)) for p in PHOTOS]
    assert all(img is not None for img in images), f"photos missing under {DATA}"
    return images


def test_classifier_batches_in_one_call_and_answers_as_single_runs():
    batched = Classifier(CLS, threads=2, rebatch=True)
    single = Classifier(CLS, threads=2)
    assert (batched.model.batching, batched.model.batch, batched.model.batching_note) == ("rebatched", None, "")
    assert batched.model.input_shape == (None, 3, 224, 224)
    assert (single.model.batching, single.model.batch) == ("chunked", 1)
    images = photos()
    np.testing.assert_allclose(batched.scores(images), np.concatenate([single.scores(im) for im in images]),
                               atol=1e-6)
    assert batched.classify(images[0])[0][0][0] == "macaw"


def test_rebatched_detector_graph_equals_the_file_one_sample_at_a_time():
    model, shipped = load_model(YOLOX, threads=2, rebatch=True), load_model(YOLOX, threads=2)
    assert model.batching == "rebatched"
    x = np.random.default_rng(1).uniform(0, 255, (3, 3, 416, 416)).astype(np.float32)
    (batch,) = model.infer_batch(x)
    assert batch.shape == (3, 3549, 85)
    np.testing.assert_allclose(batch, np.concatenate([shipped.infer(x[i])[0] for i in range(3)]), atol=1e-4)


def test_a_graph_that_mixes_samples_is_refused_and_runs_in_chunks(caplog):
    caplog.set_level("INFO", logger="megflow_mp")
    model = load_model(REID, threads=2, rebatch=True)
    assert (model.batching, model.batch, model.input_shape[0]) == ("chunked", 1, 1)
    assert model.batching_note.startswith("not rebatched: output 0 of a batch differs from single runs")
    assert any("batches run in chunks of 1" in r.getMessage() for r in caplog.records)
    x = np.random.default_rng(2).uniform(0, 255, (2, 256, 128, 3)).astype(np.float32)
    np.testing.assert_allclose(model.infer_batch(x)[0], np.concatenate([model.infer(x[i])[0] for i in range(2)]))


def test_mge_files_and_a_missing_onnx_package_fall_back_to_chunks(monkeypatch):
    mge = load_model(MODELS / "mge" / "mobilenet_v2_1.0_224_fp32.mge", threads=1, rebatch=True)
    assert mge.batching == "chunked" and "only .onnx graphs" in mge.batching_note
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    model = load_model(CLS, threads=1, rebatch=True)
    assert model.batching == "chunked" and "pip install onnx" in model.batching_note
    assert model.infer_batch(np.zeros((2, 3, 224, 224), np.float32))[0].shape == (2, 1001)


def test_symbolic_batch_refuses_what_it_cannot_rewrite():
    with pytest.raises(RebatchError, match="not an ONNX model"):
        symbolic_batch(b"\x00 not a model")
    once = symbolic_batch(CLS.read_bytes())
    with pytest.raises(RebatchError, match="no fixed batch axis"):
        symbolic_batch(once)
    assert issubclass(RebatchError, ModelError)


def test_the_probe_catches_batches_that_reorder_or_change_samples():
    same = lambda x: [x * 2.0]  # noqa: E731
    assert batch_mismatch(same, same, (4, 5), np.float32) is None
    reordered = batch_mismatch(lambda x: [x[::-1] * 2.0], same, (4, 5), np.float32)
    assert reordered and reordered.startswith("output 0 of a batch differs from single runs by up to")
    assert "shape" in batch_mismatch(lambda x: [x[:1]], same, (4,), np.float32)
    assert batch_mismatch(lambda x: [x + 1], lambda x: [x + 1], (3,), np.uint8) is None
