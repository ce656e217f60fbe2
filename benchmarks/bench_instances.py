"""Dynamic subgraph instances: the logical_test app (plugins/logical_test) at N addresses.

Each address gets its own subgraph instance (DynDemux -> TransGraph0|TransGraph1: Transform and
Checker, fed by a shared node that forks a child of its own), 3 messages x 10 repetitions each.
Measured per N: wall time of the whole run (process start to exit, startup included), the peak
over the run of the summed RSS and of the summed PSS of every process of the app (sampled from
/proc every 20 ms), and the largest process count seen. The process count must not grow with N.
Rounds of the sizes are interleaved.
"""

import pytest

from harness import APPS, ROOT, interleaved, run_engine

CONFIG = APPS / "instances" / "instances.toml"
PLUGINS = ROOT / "plugins" / "logical_test"
SIZES = {"30": 3, "300": 3, "1000": 3}


@pytest.mark.benchmark(group="instances")
@pytest.mark.parametrize("variant,round_", interleaved(SIZES))
def test_instances(benchmark, variant, round_):
    n = int(variant)
    result = benchmark.pedantic(run_engine, args=(CONFIG, PLUGINS, {"n": n}), kwargs={"sample": True},
                                rounds=1, iterations=1)
    assert "logical_test pass" in result["stdout"], result["stdout"]
    benchmark.extra_info.update({
        "variant": variant, "round": round_ + 1, "instances": n, "wall": result["wall"],
        "peak_rss_mib": result["peak_rss_mib"], "peak_pss_mib": result["peak_pss_mib"],
        "max_procs": result["max_procs"], "samples": result["samples"],
    })
