"""The model layer alone: megenginelite vs onnxruntime on the same networks, and real batches vs chunks.

Inputs are real photos pre-processed by the model layer itself (YOLOX letterbox for yolox_nano,
MobileNetV2's 224 x 224 RGB for the classifier and its feature cut), so only inference is timed.
Everything runs in the benchmark process, one model call at a time.

* group ``models``: per network and thread count (``intra_op_num_threads`` / ``threads_number``),
  the ``.onnx`` file on onnxruntime and the ``.mge`` file on megenginelite, loaded and warmed once,
  called alternately (ort, mge, ort, mge, ...) ``CALLS`` times per round, so that load on this shared
  machine hits both alike. Latency per image (one image per call): median and p90 of all calls.
* group ``batching``: MobileNetV2 ``.onnx`` as shipped (N fixed to 1: a batch of B runs as B
  inferences) vs the same file rebatched in memory (one inference for the batch, see
  megflow_mp.models.rebatch), B different photos, alternate calls; wall time and process CPU time
  per image.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import pytest

from harness import ROOT, interleaved, scaled
from serving import percentile

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.support.clips import load_image  # noqa: E402

MODELS = ROOT / "models"
NETWORKS = {  # name -> (.onnx, .mge, pre-processing of one BGR photo into the model's input)
    "yolox_nano": ("yolox_nano.onnx", "mge/yolox_nano.mge", "detector"),
    "mobilenet_v2 fp32": ("mobilenet_v2_1.0_224_fp32.onnx", "mge/mobilenet_v2_1.0_224_fp32.mge", "classifier"),
    "mobilenet_v2 feat": ("mobilenet_v2_1.0_224_feat.onnx", "mge/mobilenet_v2_1.0_224_feat.mge", "classifier"),
}
PHOTOS = ["images/cat_720p.jpg", "coco/000000000139.jpg", "images/parrot.jpg", "images/pets.jpg",
          "coco/000000007386.jpg", "images/owl.jpg", "images/hot_dog.jpg", "coco/000000000285.jpg"]
THREADS = (1, 2)
CALLS = scaled(12, 2)  # per backend and round; megenginelite's yolox_nano takes ~50-80 ms a call on 2 cores
BATCHES = (1, 4, 8)
BATCH_CALLS = scaled(24, 8)  # images per variant and round (in batches of B)


def model_input(kind: str, image: np.ndarray) -> np.ndarray:
    """One photo as the network's input sample (no batch axis), by the model layer's own code."""
    from megflow_mp.models.classify import mobilenet_input
    from megflow_mp.models.detect import letterbox

    return letterbox(image, 416)[0] if kind == "detector" else mobilenet_input([image])[0]


class Loaded:
    """Models loaded on first use and kept for the module: (file, threads, rebatch) -> Model."""

    def __init__(self):
        self.models: dict = {}

    def get(self, file: str, threads: int, rebatch: bool = False):
        from megflow_mp.models import load_model

        key = (file, threads, rebatch)
        if key not in self.models:
            model = load_model(MODELS / file, threads=threads, rebatch=rebatch)
            for _ in range(2):  # warm up: the first calls allocate, megenginelite's first is slow
                model.infer_batch(np.zeros((1,) + tuple(model.input_shape[1:]), model.dtype))
            self.models[key] = model
        return self.models[key]


@pytest.fixture(scope="module")
def loaded() -> Loaded:
    return Loaded()


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [load_image(p) for p in PHOTOS]


def alternate(calls: dict, n: int) -> dict[str, list[float]]:
    """Call every function of ``calls`` in turn, ``n`` rounds; seconds of each call, per name."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(n):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return times


def _summary(seconds: list[float], per: int = 1) -> dict:
    ms = [1000 * s / per for s in seconds]
    return {"median_ms": statistics.median(ms), "p90_ms": percentile(ms, 0.9), "calls": len(ms), "all_ms": ms}


@pytest.mark.benchmark(group="models")
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("network,round_", interleaved({name: 2 for name in NETWORKS}))
def test_backends(benchmark, loaded, images, network, round_, threads):
    onnx_file, mge_file, kind = NETWORKS[network]
    ort, mge = loaded.get(onnx_file, threads), loaded.get(mge_file, threads)
    assert (ort.backend, mge.backend) == ("onnxruntime", "megenginelite")
    x = model_input(kind, images[round_ % len(images)])[None]
    out_ort, out_mge = ort.infer(x), mge.infer(x)
    scale = max(1.0, float(np.abs(out_ort[0]).max()))
    assert np.abs(out_ort[0] - out_mge[0]).max() < 1e-3 * scale, "the two files disagree"
    times = benchmark.pedantic(alternate, args=({"onnxruntime": lambda: ort.infer(x),
                                                 "megenginelite": lambda: mge.infer(x)}, CALLS),
                               rounds=1, iterations=1)
    benchmark.extra_info.update({
        "variant": f"{network} / {threads}", "network": network, "threads": threads, "round": round_ + 1,
        "backends": {name: _summary(t) for name, t in times.items()}})


@pytest.mark.benchmark(group="batching")
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("batch,round_", interleaved({str(b): 2 for b in BATCHES}))
def test_batched_vs_chunked(benchmark, loaded, images, batch, round_, threads):
    b = int(batch)
    chunked = loaded.get(NETWORKS["mobilenet_v2 fp32"][0], threads)
    batched = loaded.get(NETWORKS["mobilenet_v2 fp32"][0], threads, rebatch=True)
    assert (chunked.batching, batched.batching) == ("chunked", "rebatched"), batched.batching_note
    x = np.stack([model_input("classifier", images[(round_ + i) % len(images)]) for i in range(b)])
    np.testing.assert_allclose(batched.infer_batch(x)[0], chunked.infer_batch(x)[0], atol=1e-5)
    cpu: dict[str, float] = {"chunked": 0.0, "rebatched": 0.0}

    def timed(name, model):
        def call():
            c0 = os.times()
            model.infer_batch(x)
            c1 = os.times()
            cpu[name] += c1.user - c0.user + c1.system - c0.system
        return call

    calls = max(2, BATCH_CALLS // b)
    times = benchmark.pedantic(alternate, args=({"chunked": timed("chunked", chunked),
                                                 "rebatched": timed("rebatched", batched)}, calls),
                               rounds=1, iterations=1)
    benchmark.extra_info.update({
        "variant": f"{b} / {threads}", "batch": b, "threads": threads, "round": round_ + 1,
        "modes": {name: {**_summary(t, b), "cpu_ms": 1000 * cpu[name] / (b * calls)}
                  for name, t in times.items()}})
