"""A longer chain, as MegFlow apps are built: ``source -> 3 Python pass-through nodes -> sink``.

The app benchmarks/apps/chain: 5 worker processes, 4 hops, the relays are plugin code (``Relay``,
a Python pass-through like a user's Transform), every channel of capacity ``cap``.

Group ``chain_small``, small envelopes ``{"i": i}``, envelopes/s:

* engine: the chain at ``cap = 16`` (MegFlow's configs use small capacities);
* engine_cap256: the same chain at ``cap = 256``;
* ring: the plain per-message baseline (baselines.ring_messages): 4 processes, the first both
  source and sink, 3 relays, 4 hops like the engine's; one ``Connection.send`` per message per
  hop, at most ``CAP_SMALL`` (16) messages in flight end to end. Target: engine >= 1.0x ring.

Group ``chain_frames``, 1080p BGR frames (6.2 MB), frames/s:

* engine: the chain at ``cap = CAP_FRAMES``; the source copies each frame once into shared memory,
  the relays forward the views, the sink checks a counter byte;
* raw: the raw limit through 5 processes (baselines.raw_frames with 3 relays): a shared ring of
  ``4 * CAP_FRAMES`` slots (the engine may have about that many frames in flight), one copy per
  frame, slot indices over Pipes. Target: engine >= 0.9x raw.

Every variant measures at its sink, from the first message after the warm-up to the last; rounds
of the variants are interleaved.
"""

import pytest

import baselines
from harness import APPS, interleaved, record, run_engine, scaled

N_SMALL = scaled(100_000, 500)
CAP_SMALL = 16
WARMUP_SMALL = scaled(1000, 10)
N_FRAMES = scaled(1000, 20)
CAP_FRAMES = 8
POOL = 10
WARMUP_FRAMES = scaled(50, 2)
APP = APPS / "chain"


def _engine(kind: str, n: int, cap: int, warmup: int):
    return lambda: run_engine(APP / "chain.toml", APP, {"kind": kind, "n": n, "cap": cap, "pool": POOL,
                                                         "warmup": warmup})


SMALL = {
    "engine": (_engine("small", N_SMALL, CAP_SMALL, WARMUP_SMALL), CAP_SMALL),
    "engine_cap256": (_engine("small", N_SMALL, 256, WARMUP_SMALL), 256),
    "ring": (lambda: baselines.ring_messages(N_SMALL, WARMUP_SMALL, window=CAP_SMALL), CAP_SMALL),
}
FRAMES = {
    "engine": _engine("frames", N_FRAMES, CAP_FRAMES, WARMUP_FRAMES),
    "raw": lambda: baselines.raw_frames(N_FRAMES, slots=4 * CAP_FRAMES, pool=POOL, warmup=WARMUP_FRAMES, relays=3),
}


@pytest.mark.benchmark(group="chain_small")
@pytest.mark.parametrize("variant,round_", interleaved({"engine": 4, "engine_cap256": 3, "ring": 4}))
def test_chain_small(benchmark, variant, round_):
    run, cap = SMALL[variant]
    result = benchmark.pedantic(run, rounds=1, iterations=1)
    assert result["bad"] == 0, f"{result['bad']} messages out of order"
    assert result["count"] == N_SMALL, f"sink got {result['count']} of {N_SMALL}"
    record(benchmark, variant, "envelopes/s", result, round_, messages=N_SMALL, cap=cap)


@pytest.mark.benchmark(group="chain_frames")
@pytest.mark.parametrize("variant,round_", interleaved({"engine": 5, "raw": 5}))
def test_chain_frames(benchmark, variant, round_):
    result = benchmark.pedantic(FRAMES[variant], rounds=1, iterations=1)
    assert result["bad"] == 0, f"{result['bad']} frames had a wrong counter byte"
    assert result["count"] == N_FRAMES, f"sink got {result['count']} of {N_FRAMES} frames"
    record(benchmark, variant, "frames/s", result, round_, frames=N_FRAMES, cap=CAP_FRAMES, pool=POOL)
