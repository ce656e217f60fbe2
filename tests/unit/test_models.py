"""The real models (../shared/models) on both backends: .onnx (onnxruntime) and .mge (megenginelite).

Photos and what is in them: ../shared/data/README.md. A missing shared folder FAILS these tests (the
models are part of the product, not an optional extra). Models and results are cached per module so
that each (format, photo) is inferred once; the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from megflow_mp.errors import MegFlowError
from megflow_mp.models import Classifier, Detector, Embedder, ModelError, cosine, load_labels, load_model
from megflow_mp.models.labels import COCO_LABELS, IMAGENET_LABELS, labels_near
from tests.support.clips import data_dir

try:
    SHARED = data_dir().parent  # ../shared, or $MEGFLOW_MP_SHARED
except FileNotFoundError:
    SHARED = Path(__file__).resolve().parents[3] / "shared"  # missing: the tests fail and say where
MODELS, DATA = SHARED / "models", SHARED / "data"
FORMATS = ["onnx", "mge"]
YOLOX, CLS, FEAT, REID = ("yolox_nano", "mobilenet_v2_1.0_224_fp32", "mobilenet_v2_1.0_224_feat",
                          "person-reidentification-retail-0288")
CATS = ["images/cat_720p.jpg", "images/cat.bmp", "coco/000000001675.jpg"]
BIKES = "coco/000000007386.jpg"
PHOTOS = CATS + [BIKES, "images/pets.jpg", "images/parrot.jpg", "images/owl.jpg", "images/hot_dog.jpg",
                 "images/grace_hopper.bmp"]
THREADS = 2


def model_path(fmt: str, stem: str) -> Path:
    return MODELS / f"{stem}.onnx" if fmt == "onnx" else MODELS / "mge" / f"{stem}.mge"


class Zoo:
    """Lazily loaded models and memoised results, shared by the tests of this module."""

    def __init__(self):
        self.models, self.results, self.images = {}, {}, {}

    def image(self, name: str) -> np.ndarray:
        if name not in self.images:
            img = cv2.imread(str(DATA / name))
            assert img is not None, f"cannot read {DATA / name}"
            self.images[name] = img
        return self.images[name]

    def get(self, cls, fmt: str, stem: str):
        key = (cls, fmt, stem)
        if key not in self.models:
            self.models[key] = cls(model_path(fmt, stem), threads=THREADS)
        return self.models[key]

    def detect(self, fmt: str, name: str):
        key = ("det", fmt, name)
        if key not in self.results:
            self.results[key] = self.get(Detector, fmt, YOLOX).detect(self.image(name))
        return self.results[key]

    def classify(self, fmt: str, name: str):
        key = ("cls", fmt, name)
        if key not in self.results:
            self.results[key] = self.get(Classifier, fmt, CLS).classify(self.image(name))[0]
        return self.results[key]


@pytest.fixture(scope="module")
def zoo():
    missing = [str(p) for p in (MODELS, DATA, MODELS / "mge", MODELS / "labels") if not p.is_dir()]
    if missing:
        pytest.fail(f"shared models/data folder missing: {', '.join(missing)} (expected next to the repository: "
                    f"the tests need the real models of ../shared/models and the photos of ../shared/data)")
    return Zoo()


def confident(dets, score=0.4):
    return [d for d in dets if d.score >= score]


# -- detection --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("photo", CATS)
def test_detects_the_cat(zoo, fmt, photo):
    dets = zoo.detect(fmt, photo)
    assert "cat" in [d.label for d in confident(dets)], dets
    h, w = zoo.image(photo).shape[:2]
    for d in dets:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and 0 < d.score <= 1
        assert d.label == load_labels(COCO_LABELS, MODELS)[d.cls]
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_boxes_are_in_original_image_pixels(zoo, fmt):
    cat = next(d for d in zoo.detect(fmt, "images/cat_720p.jpg") if d.label == "cat")
    x0, y0, x1, y1 = cat.box  # the 1280x720 photo was letterboxed to 416: boxes must be scaled back
    assert x1 - x0 > 600 and y1 - y0 > 400 and x1 > 800, cat


@pytest.mark.parametrize("fmt", FORMATS)
def test_detects_motorbike_and_bicycle(zoo, fmt):
    labels = {d.label for d in confident(zoo.detect(fmt, BIKES))}
    assert {"motorbike", "bicycle"} <= labels, zoo.detect(fmt, BIKES)


@pytest.mark.parametrize("photo", CATS + [BIKES, "images/pets.jpg"])
def test_formats_give_the_same_detections(zoo, photo):
    a, b = (confident(zoo.detect(fmt, photo), 0.3) for fmt in FORMATS)
    assert [d.label for d in a] == [d.label for d in b]
    for da, db in zip(a, b):
        assert np.abs(np.subtract(da.box, db.box)).max() < 3, (da, db)
        assert abs(da.score - db.score) < 0.01


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_batch_equals_single_detections(zoo, fmt):
    photos = CATS + [BIKES]
    batch = zoo.get(Detector, fmt, YOLOX).detect_batch([zoo.image(p) for p in photos])
    for photo, dets in zip(photos, batch):
        single = zoo.detect(fmt, photo)
        assert [d.label for d in dets] == [d.label for d in single]
        np.testing.assert_allclose([d.box for d in dets], [d.box for d in single], atol=1e-3)


# -- classification ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_parrot_is_a_macaw(zoo, fmt):
    top = zoo.classify(fmt, "images/parrot.jpg")
    assert len(top) == 5 and top[0][0] == "macaw" and top[0][1] > 0.9, top
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_cat_photos_classify_as_cats(zoo, fmt):
    for photo in CATS[:2]:
        assert zoo.classify(fmt, photo)[0][0] in ("Egyptian cat", "tabby, tabby cat", "tiger cat")


def test_formats_give_the_same_top1(zoo):
    for photo in PHOTOS:
        a, b = (zoo.classify(fmt, photo)[0] for fmt in FORMATS)
        assert a[0] == b[0] and abs(a[1] - b[1]) < 1e-3, (photo, a, b)


@pytest.mark.parametrize("fmt", FORMATS)
def test_classify_batch_equals_singles(zoo, fmt):
    photos = ["images/parrot.jpg", "images/pets.jpg", "images/owl.jpg", "images/hot_dog.jpg"]
    clf = zoo.get(Classifier, fmt, CLS)
    batch = clf.classify([zoo.image(p) for p in photos])
    assert len(batch) == 4
    for photo, top in zip(photos, batch):
        single = zoo.classify(fmt, photo)
        assert [lbl for lbl, _ in top] == [lbl for lbl, _ in single]
        np.testing.assert_allclose([s for _, s in top], [s for _, s in single], atol=1e-5)
    assert clf.scores(zoo.image(photos[0])).shape == (1, 1001)


# -- embeddings -------------------------------------------------------------------------------------
def _animals(zoo):
    cat = zoo.image("images/cat_720p.jpg")
    h, w = cat.shape[:2]
    return [cat, cat[20:h - 10, 40:w - 20], cat[50:, 60:w - 60],  # the same cat, shifted and cropped
            zoo.image("coco/000000001675.jpg"), zoo.image("images/pets.jpg"), zoo.image("images/parrot.jpg"),
            zoo.image("images/owl.jpg")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_animal_embeddings(zoo, fmt):
    emb = zoo.get(Embedder, fmt, FEAT)
    assert emb.kind == "mobilenet"
    e = emb.embed(_animals(zoo))
    assert e.shape == (7, 1280) and e.dtype == np.float32 and emb.dim == 1280
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    sim = cosine(e, e)
    assert sim[0, 1] > 0.9 and sim[0, 2] > 0.9 and sim[1, 2] > 0.9, sim[:3, :3]
    assert (sim[:3, 3:] < 0.7).all(), sim[:3, 3:]  # another cat, a dog, a parrot, an owl
    single = emb.embed(_animals(zoo)[4])
    np.testing.assert_allclose(single[0], e[4], atol=1e-5)  # a batch equals single calls


def test_formats_give_the_same_embeddings(zoo):
    imgs = _animals(zoo)[:4]
    a, b = (zoo.get(Embedder, fmt, FEAT).embed(imgs) for fmt in FORMATS)
    assert (np.diag(cosine(a, b)) > 0.999).all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_person_reid_embeddings(zoo, fmt):
    emb = zoo.get(Embedder, fmt, REID)
    assert emb.kind == "reid" and emb.size == (256, 128)
    g = zoo.image("images/grace_hopper.bmp")
    e = emb.embed([g[0:500, 100:400], g[10:510, 110:410], zoo.image("images/pets.jpg")])
    assert e.shape == (3, 256)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert cosine(e[0], e[1]) > 0.9 > cosine(e[0], e[2])


def test_cosine_shapes():
    assert cosine([1, 0], [1, 0]) == pytest.approx(1.0) and cosine([1, 0], [0, 2]) == pytest.approx(0.0)
    assert isinstance(cosine(np.ones(3), np.ones(3)), float)
    assert cosine(np.eye(3), np.ones((2, 3))).shape == (3, 2)
    with pytest.raises(ModelError, match="different sizes"):
        cosine(np.ones(3), np.ones(4))


# -- the backend ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_infer_batch_equals_single_inferences(zoo, fmt):
    model = zoo.get(Detector, fmt, YOLOX).model
    x = np.random.default_rng(0).uniform(0, 255, (4, 3, 416, 416)).astype(np.float32)
    (batch,) = model.infer_batch(x)
    singles = np.concatenate([model.infer(x[i])[0] for i in range(4)])  # no batch axis: added
    assert batch.shape == (4, 3549, 85)
    np.testing.assert_allclose(batch, singles, atol=1e-4)


def test_mge_traces_do_not_take_real_batches(zoo):
    # the .mge files bake N=1 into reshapes: a whole batch in one call is an error, never wrong data
    for stem in (YOLOX, CLS):
        model = load_model(model_path("mge", stem), threads=THREADS, dynamic_batch=True)
        x = np.zeros((2,) + model.input_shape[1:], np.float32)
        with pytest.raises(ModelError, match="batch|reshape"):
            model.infer_batch(x)


@pytest.mark.parametrize("fmt", FORMATS)
def test_wrong_inputs_name_expected_and_got(zoo, fmt):
    model = zoo.get(Classifier, fmt, CLS).model
    with pytest.raises(ModelError, match=r"expects shape \(N, 3, 224, 224\), got \(1, 3, 224, 225\)"):
        model.infer(np.zeros((1, 3, 224, 225), np.float32))
    with pytest.raises(ModelError, match="expects dtype float32, got float64"):
        model.infer(np.zeros((1, 3, 224, 224)))
    with pytest.raises(ModelError, match="one sample"):
        model.infer(np.zeros((2, 3, 224, 224), np.float32))
    with pytest.raises(ModelError, match="numpy array"):
        model.infer_batch([[0.0]])
    with pytest.raises(ModelError, match=r"must be HxWx3 .*got shape \(4, 5, 7\)"):
        zoo.get(Classifier, fmt, CLS).classify(np.zeros((4, 5, 7), np.uint8))


def test_missing_file_and_unknown_extension(tmp_path):
    missing = tmp_path / "nowhere" / "yolox.onnx"
    with pytest.raises(ModelError, match=str(missing)):
        load_model(missing)
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"unknown model format '\.pt'"):
        load_model(bogus)
    broken = tmp_path / "broken.mge"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        load_model(broken)
    with pytest.raises(ModelError, match="unknown device"):
        load_model(model_path("onnx", CLS), device="tpu")
    assert issubclass(ModelError, MegFlowError)


def test_megengine_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "megenginelite", None)  # import megenginelite -> ImportError
    with pytest.raises(ModelError, match=r'pip install "megengine==1\.13\.0"'):
        load_model(model_path("mge", CLS))
    load_model(model_path("onnx", CLS))  # .onnx files do not need it


def test_megenginelite_is_imported_only_for_mge_files():
    code = (f"import sys; from megflow_mp.models import Detector; Detector({str(model_path('onnx', YOLOX))!r}); "
            "assert not any(m.startswith('megengine') for m in sys.modules), 'megengine imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("fmt", ["onnx", "mge"])
def test_gpu_request_runs_on_the_gpu_or_says_it_fell_back(zoo, fmt, caplog):
    model = load_model(model_path(fmt, CLS), device="gpu")
    assert model.device in ("cpu", "gpu")
    fell_back = [r.getMessage() for r in caplog.records if "running on the CPU" in r.getMessage()]
    assert bool(fell_back) == (model.device == "cpu"), fell_back
    if fell_back and fmt == "onnx":  # the reason: a CPU-only build, or a CUDA provider that did not start
        assert "install onnxruntime-gpu" in fell_back[0] or "did not start" in fell_back[0], fell_back
    assert model.infer(np.zeros((1, 3, 224, 224), np.float32))[0].shape == (1, 1001)


# -- labels and images ------------------------------------------------------------------------------
def test_label_files(zoo, tmp_path):
    coco, imagenet = load_labels(COCO_LABELS, MODELS), load_labels(IMAGENET_LABELS, root=MODELS)
    assert len(coco) == 80 and (coco[0], coco[1], coco[3], coco[15], coco[16]) == (
        "person", "bicycle", "motorbike", "cat", "dog")
    assert len(imagenet) == 1001 and imagenet[0] == "background"
    assert labels_near(model_path("mge", YOLOX), COCO_LABELS) == coco == labels_near(model_path("onnx", YOLOX),
                                                                                      COCO_LABELS)
    with pytest.raises(ModelError, match="label file not found"):
        load_labels(tmp_path / "none.txt")
    with pytest.raises(ModelError, match="the model has 80 classes, 2 labels were given"):
        Detector(model_path("onnx", YOLOX), classes=["a", "b"]).detect(zoo.image(CATS[1]))
    assert Classifier(model_path("onnx", CLS), labels=MODELS / IMAGENET_LABELS).labels == imagenet
    with pytest.raises(ModelError, match="no label file"):
        labels_near(tmp_path / "m.onnx", COCO_LABELS)


def test_grey_and_bgra_images_are_accepted(zoo):
    det = zoo.get(Detector, "onnx", YOLOX)
    cat = zoo.image("images/cat.bmp")
    grey = cv2.cvtColor(cat, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(cat, cv2.COLOR_BGR2BGRA)
    assert "cat" in [d.label for d in det.detect(grey)]
    assert [d.label for d in det.detect(bgra)] == [d.label for d in zoo.detect("onnx", "images/cat.bmp")]
    assert det.detect_batch([]) == []
    with pytest.raises(ModelError, match="numpy array"):
        det.detect("cat.bmp")
