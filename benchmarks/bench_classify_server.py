"""A MobileNetV2 classification service: the engine (ImageServer + dynamic batching) vs plain FastAPI.

Every request POSTs the same COCO photo (``PHOTO_NAME``, 640x426, 158 kB JPEG) and gets back the
JSON top 5 of ``models/mobilenet_v2_1.0_224_fp32.onnx`` (onnxruntime). ``CLIENTS`` threads in a
closed loop (serving.closed_loop) until ``N`` answers came; every answer is checked (200, five
labels). Each server runs in its own subprocess, started and warmed before the first round.

* engine: benchmarks/apps/classify_server: ImageServer (HTTP, JPEG decode, the image into shared
  memory) -> BatchClassify, ``CLONED`` replicas sharing one channel, each with ``THREADS``
  onnxruntime thread(s), ``batch_recv(MAX_BATCH, WAIT_MS)`` -> the JSON back through ImageServer.
  1 + CLONED workers + the supervisor. Settings for 2 cores: one inference thread per replica and
  two replicas use both cores without onnxruntime's spinning threads (2 intra-op threads cost ~10%
  more CPU per image); a batch runs as single inferences (``REBATCH``: a rebatched model, one
  inference per batch, costs more CPU per image on 1 thread, see bench_models.py).
* plain-*: benchmarks/plain_classify_server.py, one uvicorn process, the same decode,
  pre-processing, inference and top-k code (megflow_mp.models.Classifier), one image per inference:
  ``plain-sync``: a ``def`` route on FastAPI's thread pool with 2 classifiers of 1 thread each (the
  best plain setting found on 2 cores); ``plain-one``: the same with one classifier of 2 threads
  (one model, onnxruntime's thread count = the cores); ``plain-async``: an ``async def`` route doing
  it all on the event loop, 2 threads.

QPS = N / wall time of the round; p50/p95/p99 of the per-request latencies; CPU per request of the
server's process tree and of the client. Rounds of the variants are interleaved. Target (report.py):
engine >= 1.3x the QPS of the best plain variant with a p95 at most 1.5x its p95.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness import APPS, ROOT, interleaved, scaled
from serving import Server, assert_all_answered, closed_loop_cpu, engine_server, warmed

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.support.clips import data_dir  # noqa: E402 - shared/data, or $MEGFLOW_MP_SHARED

HERE = Path(__file__).resolve().parent
MODEL = "models/mobilenet_v2_1.0_224_fp32.onnx"
PHOTO_NAME = "coco/000000000139.jpg"
N = scaled(400, 32)  # requests per round: about 3 s on 2 shared cores
CLIENTS = 16
WARMUP = scaled(48, 16)
CLONED, THREADS, MAX_BATCH, WAIT_MS = 2, 1, 8, 2
REBATCH = False  # on 1 thread a real batch costs MobileNetV2 more CPU per image than single runs (bench_models)
PLAIN = {"plain-sync": ["--endpoint", "sync", "--sessions", "2", "--threads", "1"],
         "plain-one": ["--endpoint", "sync", "--sessions", "1", "--threads", "2"],
         "plain-async": ["--endpoint", "async", "--threads", "2"]}
ROUNDS = {"engine": 3, "plain-sync": 3, "plain-one": 2, "plain-async": 2}


class TopFive:
    """The check of every answer: a 200 JSON answer with five labels, best first. Keeps the batch
    size each answer says it was classified in (``closed_loop`` calls it from its client threads)."""

    def __init__(self):
        self.batches: list[int] = []

    def __call__(self, response) -> bool:
        if response.status_code != 200:
            return False
        body = response.json()
        top = body.get("top", [])
        scores = [t["score"] for t in top]
        self.batches.append(body.get("batch", 0))
        return len(top) == 5 and scores == sorted(scores, reverse=True) and all(t["label"] for t in top)


@pytest.fixture(scope="module")
def photo() -> bytes:
    return (data_dir() / PHOTO_NAME).read_bytes()


@pytest.fixture(scope="module")
def servers(photo):
    """variant -> (url of its /analyze route, pid, process count); all started before the first round."""
    started: dict[str, Server] = {}
    plain_env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get(
        "PYTHONPATH")) if p))
    try:
        started["engine"] = engine_server(
            APPS / "classify_server" / "classify_server.toml", APPS / "classify_server",
            {"model": MODEL, "cloned": CLONED, "threads": THREADS, "max_batch": MAX_BATCH, "wait_time": WAIT_MS,
             "rebatch": REBATCH, "cap": 16, "max_inflight": 64}, name="engine classification service")
        for variant, args in PLAIN.items():
            started[variant] = Server([sys.executable, str(HERE / "plain_classify_server.py"), "--model", MODEL,
                                       *args], env=plain_env, name=variant)
        yield warmed(started, photo, WARMUP, CLIENTS, TopFive())
    finally:
        codes = {variant: server.stop() for variant, server in started.items()}
    assert codes.get("engine") == 0, f"the engine app did not drain cleanly: {codes}\n{started['engine'].output()}"


def measured(url: str, pid: int, photo: bytes) -> dict:
    """One round, with the CPU time the server (its whole process tree) and this client used and the
    mean batch size the answers came in."""
    check = TopFive()
    result = closed_loop_cpu(url, photo, N, CLIENTS, pid, check=check)
    result["mean_batch"] = sum(check.batches) / max(1, len(check.batches))
    return result


@pytest.mark.benchmark(group="classify_server")
@pytest.mark.parametrize("variant,round_", interleaved(ROUNDS))
def test_classify_server(benchmark, servers, photo, variant, round_):
    url, pid, procs = servers[variant]
    result = benchmark.pedantic(measured, args=(url, pid, photo), rounds=1, iterations=1)
    assert_all_answered(result, N, "answers were not a top 5")
    benchmark.extra_info.update({
        "variant": variant, "round": round_ + 1, "unit": "requests/s", "rate": result["rate"],
        **{k: result[k] for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "mean_batch", "server_cpu_ms",
                                  "client_cpu_ms")},
        "requests": N, "clients": CLIENTS, "procs": procs, "photo": PHOTO_NAME, "photo_bytes": len(photo),
        "cloned": CLONED, "threads": THREADS, "max_batch": MAX_BATCH, "wait_ms": WAIT_MS,
        "inference": "rebatched" if REBATCH else "chunked",
        "plain_args": " ".join(PLAIN.get(variant, []))})
