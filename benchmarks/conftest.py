"""Benchmarks: collect ``bench_*.py`` (setup.cfg's pytest settings only collect tests/), make the
helper modules of this folder importable, and add machine facts to the benchmark JSON."""

import os
import platform
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def pytest_collect_file(file_path, parent):
    # a file named on the command line is collected by pytest itself: do not collect it twice
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_benchmark_update_machine_info(config, machine_info):
    import numpy

    info = {"cpu_count": os.cpu_count(), "numpy": numpy.__version__, "kernel": platform.release()}
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
        with open("/proc/loadavg") as f:
            info["loadavg_at_start"] = f.read().split()[:3]
    except OSError:
        pass
    machine_info["megflow_bench"] = info


def pytest_configure(config):
    """``--benchmark-json .benchmarks/bench.json`` works on a fresh checkout (the folder may not exist)."""
    path = config.getoption("benchmark_json", None)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
