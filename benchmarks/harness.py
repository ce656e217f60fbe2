"""Shared helpers of the benchmarks: run an engine app in a subprocess, sample its processes.

An engine app lives under ``benchmarks/apps/<name>/`` (a plugin package and a templated config);
:func:`run_engine` writes the template variables to a TOML file and runs
``sys.executable -m megflow_mp.cli run -c CONFIG -p PLUGINS --dynamic VARS`` with ``PYTHONPATH=src``
(or ``$BENCH_SRC``: the ``src`` folder of another checkout, to compare engine versions).
``BENCH_ROUNDS`` caps the rounds of every variant and ``BENCH_SCALE`` (a fraction) shrinks every
count of messages, frames, requests and calls (:func:`scaled`): ``BENCH_ROUNDS=1 BENCH_SCALE=0.02``
is the small version of ``make bench`` that ``make test`` runs (its figures mean nothing).
Sinks print one JSON line (``{"bench": ..., "rate": ...}``) with the rate they measured themselves
(on a Ray cluster a sink on another machine prints it through Ray, prefixed ``(HostAgent pid=N)``);
it is returned, with the wall time of the whole run and, when asked, samples of the process tree.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The engine under test: BENCH_SRC=/path/to/other/src compares another version of it (A/B runs).
SRC = Path(os.environ.get("BENCH_SRC", ROOT / "src")).resolve()
APPS = Path(__file__).resolve().parent / "apps"
PAGE = os.sysconf("SC_PAGE_SIZE")
SCALE = float(os.environ.get("BENCH_SCALE", "1"))  # see the module docstring
RAY_PREFIX = re.compile(r"^(?:\x1b\[[0-9;]*m)?\([^)]*\)(?:\x1b\[0m)?\s*")  # Ray's "(Actor pid=N) ", coloured


# -- process tree sampling (/proc, no psutil) -------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (that still exist)."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack += _children(p)
    return out


def _rss(pid: int) -> int:
    """Resident set size in bytes (counts shared pages in full, in every process)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages divided among the processes sharing them)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


class TreeSampler:
    """Samples a process tree every ``interval`` s in a thread: peak process count, peak of the sum
    of RSS and peak of the sum of PSS over all processes of the tree."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid, self.interval = pid, interval
        self.max_procs = 0
        self.peak_rss = 0
        self.peak_pss = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            pids = tree(self.pid)
            self.max_procs = max(self.max_procs, len(pids))
            self.peak_rss = max(self.peak_rss, sum(_rss(p) for p in pids))
            self.peak_pss = max(self.peak_pss, sum(_pss(p) for p in pids))
            self.samples += 1
            self._stop.wait(self.interval)

    def result(self) -> dict:
        return {"max_procs": self.max_procs, "peak_rss_mib": self.peak_rss / 2**20,
                "peak_pss_mib": self.peak_pss / 2**20, "samples": self.samples}


# -- running an engine app ---------------------------------------------------------------------------------
def run_engine(config: Path, plugins: Path, variables: dict, sample: bool = False, timeout: float = 240,
               args: tuple = ()) -> dict:
    """Run one app to its end (``args``: more options of ``run``, e.g. ``--no-metrics``). Returns the
    sink's JSON line (if it printed one) as a dict, plus ``wall`` (seconds, process start to exit)
    and, with ``sample``, the :class:`TreeSampler` result. Raises ``RuntimeError`` with the app's
    output if it fails."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="bench-vars-", delete=False) as f:
        for key, value in variables.items():
            f.write(f"{key} = {json.dumps(value)}\n")
        vars_file = f.name
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "megflow_mp.cli", "run", "-c", str(config), "-p", str(plugins),
           "--dynamic", vars_file, *args]
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler = TreeSampler(proc.pid) if sample else None
        if sampler:
            sampler.__enter__()
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"{config.name}: no end within {timeout} s\n{out}\n{err}") from None
        finally:
            if sampler:
                sampler.__exit__(None, None, None)
        wall = time.perf_counter() - t0
    finally:
        os.unlink(vars_file)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}\n{out}\n{err}")
    result: dict = {}
    for line in out.splitlines():
        line = RAY_PREFIX.sub("", line)  # a node on another machine of a Ray cluster: "(HostAgent pid=N) {...}"
        if line.startswith("{"):
            result = json.loads(line)
    result["wall"] = wall
    result["stdout"] = out
    if sampler:
        result.update(sampler.result())
    return result


def scaled(n: int, least: int = 1) -> int:
    """``n`` (a count of one round) times ``BENCH_SCALE``, at least ``least``."""
    return max(least, round(n * SCALE))


def interleaved(variants: dict[str, int]) -> list:
    """pytest params ``(variant, round)`` with the rounds of all variants interleaved
    (a1 b1 c1 a2 b2 c2 ...), so that a burst of load on this shared machine hits every variant
    alike; ``variants`` maps each to its number of rounds (``BENCH_ROUNDS`` caps them all)."""
    cap = os.environ.get("BENCH_ROUNDS")
    counts = {v: min(n, int(cap)) if cap else n for v, n in variants.items()}
    return [pytest.param(v, r, id=f"{v}-{r + 1}")
            for r in range(max(counts.values())) for v, n in counts.items() if r < n]


def record(benchmark, variant: str, unit: str, result: dict, round_: int, **params) -> None:
    """Put the rate measured in this round into ``benchmark.extra_info`` (report.py reads it)."""
    benchmark.extra_info.update({"variant": variant, "round": round_ + 1, "unit": unit,
                                 "rate": result["rate"], **params})
