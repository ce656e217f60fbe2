"""The small version of ``make bench``: every benchmark (engine and baselines) at one round and 2% of
its size, then ``benchmarks/report.py`` on its JSON, so that the benchmarks, their baselines and the
report keep working. Its figures mean nothing (sizes this small measure start-up); ``make bench``
runs the full size and writes benchmarks/RESULTS.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ["## Throughput", "## Dynamic subgraph instances", "## HTTP image round trip",
            "## MobileNetV2 classification service", "## Video: N files decoded at once",
            "## simple_det_classify: the classifier's batch_recv", "## electric_bicycle over N files",
            "## megenginelite vs onnxruntime", "## Real batches vs chunks", "## Live view in the browser",
            "## simple_det_classify on 1-3 raylets",
            "## Cameras per machine"]


def test_every_benchmark_runs_small_and_its_report_is_written(tmp_path):
    env = dict(os.environ, BENCH_ROUNDS="1", BENCH_SCALE="0.02")
    data = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "benchmarks",
                        f"--benchmark-json={data}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    report = tmp_path / "RESULTS.md"
    r = subprocess.run([sys.executable, "benchmarks/report.py", str(data), "-o", str(report)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    text = report.read_text()
    assert [s for s in SECTIONS if s not in text] == []
    assert "| engine, cap 16 |" in text and "envelopes/s" in text
