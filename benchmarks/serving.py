"""Helpers of the server benchmarks: long-lived engine apps and plain uvicorn servers in subprocesses,
and a closed-loop HTTP load generator.

:class:`Server` starts a command whose stderr says ``listening on http://HOST:PORT`` once it serves
(the engine's server nodes log it; benchmarks/plain_image_server.py prints it), keeps draining its
output on threads (a chatty server never blocks on a full pipe) and stops it with SIGINT (the
engine drains, exits 0 and, under ``MEGFLOW_MP_PROFILE``, writes its profiles).
:func:`engine_server` runs an app of ``benchmarks/apps`` like :func:`harness.run_engine` does
(``PYTHONPATH`` = the engine under test, template variables through ``--dynamic``).

:func:`closed_loop` is the client: ``clients`` threads, each with its own ``requests.Session``
(keep-alive), send the next request as soon as the previous answer came back, until ``n``
requests were answered; it returns QPS (answered requests / wall time of the batch) and the
latency of every request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import ROOT, SRC


class Server:
    """A server subprocess; ``url`` is known once it said ``listening on``."""

    def __init__(self, cmd: list[str], env: dict | None = None, timeout: float = 60, name: str = "server"):
        self.name, self.cmd = name, cmd
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._ready = threading.Event()
        self.url: str | None = None
        self._threads = [threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout), daemon=True),
                         threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr, True),
                                          daemon=True)]
        for t in self._threads:
            t.start()
        if not self._ready.wait(timeout) or self.url is None:
            self.kill()
            raise RuntimeError(f"{name} did not start within {timeout} s: {' '.join(cmd)}\n"
                               f"{''.join(self.stdout[-20:])}\n{''.join(self.stderr[-40:])}")

    def _drain(self, stream, lines: list, watch: bool = False) -> None:
        for line in stream:
            lines.append(line)
            if watch and self.url is None and "listening on " in line:
                self.url = line.split("listening on ", 1)[1].split()[0].rstrip("/")
                self._ready.set()
        if watch:
            self._ready.set()  # the process ended before serving: the waiter sees url None

    def pids(self) -> list[int]:
        from harness import tree

        return tree(self.proc.pid)

    def stop(self, timeout: float = 60) -> int:
        """SIGINT (drain), wait; returns the exit code. Kills it if it does not end in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        for t in self._threads:
            t.join(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants, all their
    threads included (also the threads that already ended)."""
    from harness import tree

    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def engine_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def write_vars(variables: dict) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="bench-vars-", delete=False) as f:
        for key, value in variables.items():
            f.write(f"{key} = {json.dumps(value)}\n")
        return f.name


def engine_cmd(config: Path, plugins: Path, vars_file: str) -> list[str]:
    return [sys.executable, "-m", "megflow_mp.cli", "run", "-c", str(config), "-p", str(plugins),
            "--dynamic", vars_file]


def engine_server(config: Path, plugins: Path, variables: dict, name: str = "engine") -> Server:
    """An engine app with a server node (its config must give it ``port = 0``: any free port)."""
    vars_file = write_vars(variables)
    try:
        return Server(engine_cmd(config, plugins, vars_file), env=engine_env(), name=name)
    finally:
        os.unlink(vars_file)


# -- the client ------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, linear between the closest ranks."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def closed_loop(url: str, body: bytes, n: int, clients: int, headers: dict | None = None,
                check=None, timeout: float = 60) -> dict:
    """POST ``body`` to ``url`` ``n`` times from ``clients`` threads (closed loop, keep-alive).

    ``check(response)`` returns True for a good answer (default: status 200). Returns ``rate``
    (answered requests per second of the batch's wall time), ``p50_ms``, ``p95_ms``, ``p99_ms``, ``mean_ms``,
    ``count``, ``bad`` (wrong answers) and ``errors`` (exceptions, first one kept)."""
    import requests

    headers = headers or {"Content-Type": "image/jpeg"}
    check = check or (lambda r: r.status_code == 200)
    lock = threading.Lock()
    left = [n]
    lat: list[float] = []
    bad = [0]
    errors: list[str] = []
    start = threading.Barrier(clients + 1)

    def client():
        with requests.Session() as s:
            start.wait()
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                t0 = time.perf_counter()
                try:
                    r = s.post(url, data=body, headers=headers, timeout=timeout)
                    ok = check(r)
                except Exception as exc:  # noqa: BLE001 - counted, reported
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    if not ok:
                        bad[0] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"rate": len(lat) / wall if wall > 0 else 0.0, "count": len(lat), "seconds": wall,
            "p50_ms": 1000 * percentile(lat, 0.50), "p95_ms": 1000 * percentile(lat, 0.95),
            "p99_ms": 1000 * percentile(lat, 0.99),
            "mean_ms": 1000 * sum(lat) / len(lat) if lat else float("nan"),
            "bad": bad[0], "errors": len(errors), "first_error": errors[0] if errors else None}


def warmed(servers: dict[str, Server], body: bytes, n: int, clients: int, check) -> dict:
    """POST ``body`` ``n`` times to ``/analyze/bench`` of every server (all must answer well);
    returns variant -> (that url, the server's pid, its process count)."""
    out = {}
    for variant, server in servers.items():
        url = f"{server.url}/analyze/bench"
        warm = closed_loop(url, body, n, clients, check=check)
        assert warm["bad"] == 0 and warm["errors"] == 0, (variant, warm, server.output()[-2000:])
        out[variant] = (url, server.proc.pid, len(server.pids()))
    return out


def assert_all_answered(result: dict, n: int, wrong: str) -> None:
    """Fail unless a :func:`closed_loop` result has ``n`` answers, no errors and no wrong answers
    (``wrong`` says what a wrong one was, e.g. "answers were no JPEG")."""
    assert result["errors"] == 0, result["first_error"]
    assert result["bad"] == 0, f"{result['bad']} {wrong}"
    assert result["count"] == n, f"{result['count']} of {n} requests answered"


def closed_loop_cpu(url: str, body: bytes, n: int, clients: int, pid: int, check=None) -> dict:
    """:func:`closed_loop`, plus the CPU time per request (ms) of the server (``pid`` and its whole
    process tree: ``server_cpu_ms``) and of this client process (``client_cpu_ms``) over it."""
    server0, client0 = tree_cpu(pid), os.times()
    result = closed_loop(url, body, n, clients, check=check)
    server1, client1 = tree_cpu(pid), os.times()
    result["server_cpu_ms"] = 1000 * (server1 - server0) / n
    result["client_cpu_ms"] = 1000 * (client1.user - client0.user + client1.system - client0.system) / n
    return result
