"""The basis_function examples (plugins/<name>/ + configs/<name>/<name>.toml) run end to end.

Each test runs ``megflow-mp run -c configs/<name>/<name>.toml -p plugins/<name>`` in a subprocess
(the console script next to ``sys.executable``, else ``python -m megflow_mp.cli`` with
``PYTHONPATH=src``) and checks exit code 0 and every ``result <json>`` line the sinks print.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["batch", "demux", "future", "map_reduce", "nest"]
TIMEOUT = 60


def _command() -> list[str]:
    script = Path(sys.executable).parent / "megflow-mp"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "megflow_mp.cli"]


def _env() -> dict:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def megflow(command: str, name: str) -> subprocess.CompletedProcess:
    args = _command() + [command, "-c", f"configs/{name}/{name}.toml", "-p", f"plugins/{name}"]
    return subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)


def run_example(name: str) -> dict[str, list]:
    """Run the example; return the parsed ``<tag> <json>`` lines of stdout by tag (in order)."""
    proc = megflow("run", name)
    report = f"exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, report
    assert "Traceback" not in proc.stderr, report
    assert " ERROR " not in proc.stderr and " WARNING " not in proc.stderr, report
    lines: dict[str, list] = defaultdict(list)
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        tag, _, payload = line.partition(" ")
        assert tag in ("result", "woke"), f"unexpected output line {line!r}\n{report}"
        lines[tag].append(json.loads(payload))
    return lines


@pytest.mark.parametrize("name", EXAMPLES)
def test_check(name):
    proc = megflow("check", name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"configs/{name}/{name}.toml: ok" in proc.stdout


def test_batch():
    results = run_example("batch")["result"]
    n = 23
    # one producer, one consumer per channel: messages keep their order
    assert [r["id"] for r in results] == list(range(n))
    groups = defaultdict(list)
    for r in results:
        groups[r["group_id"]].append(r["id"])
    assert sorted(groups) == list(range(len(groups)))  # group ids 0, 1, 2, ... as stamped
    for gid, ids in groups.items():
        assert 1 <= len(ids) <= 5, (gid, ids)
        assert ids == list(range(ids[0], ids[0] + len(ids))), (gid, ids)  # a batch is a run of the stream
        assert {r["group_size"] for r in results if r["group_id"] == gid} == {len(ids)}
    assert len(groups) >= -(-n // 5)


def test_demux():
    results = run_example("demux")["result"]
    by_sink = defaultdict(list)
    for r in results:
        by_sink[r["sink"]].append(r["value"])
    assert set(by_sink) == {"even", "odd"}
    assert by_sink["even"] == list(range(0, 100, 2))
    assert by_sink["odd"] == list(range(1, 100, 2))


def test_future():
    out = run_example("future")
    n = 5
    woke = {(w["round"], w["x"]): w["value"] for w in out["woke"]}
    assert len(out["woke"]) == 2 * n and len(woke) == 2 * n
    results = out["result"]
    assert [r["round"] for r in results] == list(range(n))
    for r in results:
        xs = [2 * r["round"], 2 * r["round"] + 1]
        assert r["xs"] == xs
        # each future returned exactly what the sink (another process) woke it with
        assert r["values"] == [woke[(r["round"], x)] for x in xs]
        assert r["values"] == [x * x + 1 for x in xs]


def test_map_reduce():
    results = run_example("map_reduce")["result"]
    rng = random.Random(7)  # the source's seed and n in the config
    expected = [rng.randint(0, 1000) for _ in range(50)]
    assert [r["x"] for r in results] == expected
    for r in results:
        assert r["sum"] == 3 * r["x"], r


def _nest_array(i):
    h, w = 16 + i % 7, 24 + 3 * (i % 5)
    return ((np.arange(h * w * 3, dtype=np.uint32) * 7 + i) % 251).astype(np.uint8).reshape(h, w, 3)


def test_nest():
    results = run_example("nest")["result"]
    assert [r["id"] for r in results] == list(range(100))  # Reorder restored the order
    for r in results:
        a = _nest_array(r["id"])
        assert r["ok"] is True, r
        assert r["shape"] == list(a.shape), r
        assert r["checksum"] == zlib.crc32(a.tobytes()), r


def test_examples_have_docs():
    for name in EXAMPLES:
        init = ROOT / "plugins" / name / "__init__.py"
        assert init.read_text().lstrip().startswith('"""'), init
        config = (ROOT / "configs" / name / f"{name}.toml").read_text()
        assert config.startswith("#"), name


def test_profile_env_writes_one_cprofile_per_worker(tmp_path):
    """MEGFLOW_MP_PROFILE=DIR (made when missing) gets <graph>.<node>-<replica>.prof of every worker."""
    import pstats

    out = tmp_path / "not" / "yet"
    env = {**_env(), "MEGFLOW_MP_PROFILE": str(out)}
    args = _command() + ["run", "-c", "configs/demux/demux.toml", "-p", "plugins/demux"]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    profiles = sorted(out.glob("*.prof"))
    assert profiles, f"no profile written:\n{proc.stderr}"
    for path in profiles:
        assert pstats.Stats(str(path)).total_calls > 0, path
