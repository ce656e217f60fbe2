"""Small envelopes (``{"i": i}``) through a 3-node pass-through chain, envelopes/s.

* engine: ``source -> Transform -> sink`` (benchmarks/apps/envelopes): 3 worker processes, channel
  capacity ``CAP``; the sink checks the order of ``i``.
* pipe: one ``multiprocessing.Connection.send`` per message per hop through 3 processes
  (baselines.pipe_messages).
* engine_nometrics: the engine with ``--no-metrics`` (the engine variant collects metrics, the
  default): the cost of metrics is engine / engine_nometrics (target >= 0.97).

Both measure at the sink, from the first message after ``WARMUP`` to the last; rounds interleaved.
Target: engine >= 100k envelopes/s.
"""

import pytest

import baselines
from harness import APPS, interleaved, record, run_engine, scaled

N = scaled(200_000, 500)
CAP = 256
WARMUP = scaled(1000, 10)
APP = APPS / "envelopes"

RUN = {
    "engine": lambda: run_engine(APP / "envelopes.toml", APP, {"n": N, "cap": CAP, "warmup": WARMUP}),
    "engine_nometrics": lambda: run_engine(APP / "envelopes.toml", APP, {"n": N, "cap": CAP, "warmup": WARMUP},
                                           args=("--no-metrics",)),
    "pipe": lambda: baselines.pipe_messages(N, WARMUP),
}


@pytest.mark.benchmark(group="envelopes")
@pytest.mark.parametrize("variant,round_", interleaved({"engine": 5, "engine_nometrics": 5, "pipe": 5}))
def test_envelopes(benchmark, variant, round_):
    result = benchmark.pedantic(RUN[variant], rounds=1, iterations=1)
    assert result["bad"] == 0, f"{result['bad']} messages out of order"
    assert result["count"] == N, f"sink got {result['count']} of {N}"
    record(benchmark, variant, "envelopes/s", result, round_, messages=N, cap=CAP)
