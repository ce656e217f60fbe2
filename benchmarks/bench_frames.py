"""1080p BGR uint8 frames (1920x1080x3, 6.2 MB) through a 3-node pass-through chain, frames/s.

* engine: ``source -> Transform -> sink`` (benchmarks/apps/frames): 3 worker processes. The source
  fills ``POOL`` frames once, writes a counter into byte 0 of one before each send (the engine copies
  it once into its shared-memory ring); Transform forwards the received view (no copy); the sink
  checks the counter byte of every frame.
* raw: the "raw limit" (baselines.raw_frames): 3 processes, a shared ring of ``2 * CAP`` frame slots,
  one copy per frame into a slot, slot indices through the chain over Pipes, slots returned to the
  producer by the consumer (flow control; the engine may have about ``2 * CAP`` frames in flight).
* queue: ``multiprocessing.Queue(maxsize=CAP)`` between the same 3 processes (pickle + pipe per hop).
* engine_nometrics: the engine with ``--no-metrics`` (the engine variant collects metrics, the
  default): the cost of metrics is engine / engine_nometrics (target >= 0.97).

Every variant measures at its sink, from the first frame after the warm-up to the last. Rounds of
the variants are interleaved (one test per variant and round).
"""

import pytest

import baselines
from harness import APPS, interleaved, record, run_engine, scaled

N = scaled(1000, 20)  # frames per engine/raw round
N_QUEUE = scaled(150, 10)  # frames per Queue round (it is ~20x slower)
CAP = 8  # engine channel capacity; Queue maxsize; the raw ring has 2 * CAP slots
POOL = 10  # distinct preallocated source frames (>= CAP + 2: Queue pickles after put returns)
WARMUP = scaled(50, 2)
WARMUP_QUEUE = scaled(10, 2)
APP = APPS / "frames"


def _engine():
    return run_engine(APP / "frames.toml", APP, {"n": N, "cap": CAP, "pool": POOL, "warmup": WARMUP})


def _engine_nometrics():
    return run_engine(APP / "frames.toml", APP, {"n": N, "cap": CAP, "pool": POOL, "warmup": WARMUP},
                      args=("--no-metrics",))


def _raw():
    return baselines.raw_frames(N, slots=2 * CAP, pool=POOL, warmup=WARMUP)


def _queue():
    return baselines.queue_frames(N_QUEUE, cap=CAP, pool=POOL, warmup=WARMUP_QUEUE)


RUN = {"engine": (_engine, N), "engine_nometrics": (_engine_nometrics, N), "raw": (_raw, N),
       "queue": (_queue, N_QUEUE)}


@pytest.mark.benchmark(group="frames")
@pytest.mark.parametrize("variant,round_", interleaved({"engine": 7, "engine_nometrics": 7, "raw": 7, "queue": 3}))
def test_frames(benchmark, variant, round_):
    run, n = RUN[variant]
    result = benchmark.pedantic(run, rounds=1, iterations=1)
    assert result["bad"] == 0, f"{result['bad']} frames had a wrong counter byte"
    assert result["count"] == n, f"sink got {result['count']} of {n} frames"
    record(benchmark, variant, "frames/s", result, round_, frames=n, cap=CAP, pool=POOL)
