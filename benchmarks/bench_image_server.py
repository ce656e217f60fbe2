"""ImageServer round trip vs a plain FastAPI + uvicorn endpoint, requests/s and latency.

Every request POSTs the same COCO photo (``PHOTO_NAME``, a 640x426 JPEG of 160 kB) as a raw ``image/jpeg`` body and
gets a JPEG back. The servers, each in its own subprocess on a free port of 127.0.0.1, started once
for the module (startup excluded) and warmed with ``WARMUP`` requests:

* engine: the app benchmarks/apps/image_server: ImageServer -> subgraph (built-in Transform: the
  decoded image back unchanged) -> ImageServer, which JPEG-encodes it (``response = "image"``).
  2 worker processes (server: uvicorn thread on an asyncio loop, body decode and reply encode on
  its thread pool, the hub copying the image once into shared memory; Transform) + the supervisor.
* plain: benchmarks/plain_image_server.py, the same decode + encode (cv2.imdecode/imencode on the
  loop's thread pool) in the route itself, uvicorn with 1 worker in 1 process, on the stdlib
  asyncio loop as the engine's front door.
* plain-uvloop: the same, on uvicorn's default loop (uvloop when installed, as here).

Process split: both sides serve from a process of their own, apart from the client (which runs
in the pytest process), so the client's CPU use and the kernel's loopback TCP cost are the same
for both. Neither side gains parallelism from its processes: the engine's HTTP parsing, decode and
encode share one process and one GIL exactly as the plain server's do (cv2 releases the GIL in both);
its second process (Transform) adds a hop (shared-memory copy + 2 messages per request) and nothing
else: the split is a cost for the engine here, never an advantage.

The client: ``CLIENTS`` threads, each with a keep-alive ``requests.Session``, in a closed loop
(next request when the answer came) until ``N`` requests were answered. QPS = N / wall time of
the batch; p50/p99 of the per-request latencies; CPU time (user + system, every thread) per
request of the server's whole process tree and of the client process. Rounds of the variants are
interleaved.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import APPS, ROOT, interleaved, scaled
from serving import Server, closed_loop_cpu, engine_server, warmed

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.support.clips import data_dir  # noqa: E402 - shared/data, or $MEGFLOW_MP_SHARED

HERE = Path(__file__).resolve().parent
PHOTO_NAME = "coco/000000000139.jpg"
N = scaled(800, 32)  # requests per round (about 2-3 s per round on 2 shared cores)
CLIENTS = 16
WARMUP = scaled(64, 16)
CAP = 16
ROUNDS = {"engine": 3, "plain": 3, "plain-uvloop": 2}


def _plain(loop: str) -> Server:
    return Server([sys.executable, str(HERE / "plain_image_server.py"), "--loop", loop], name=f"plain ({loop})")


def _is_jpeg(response) -> bool:
    return (response.status_code == 200 and response.headers.get("content-type") == "image/jpeg"
            and response.content[:2] == b"\xff\xd8")


@pytest.fixture(scope="module")
def photo() -> bytes:
    return (data_dir() / PHOTO_NAME).read_bytes()


@pytest.fixture(scope="module")
def servers(photo):
    """variant -> (url of its /analyze route, pid, process count); all started before the first round."""
    started: dict[str, Server] = {}
    try:
        started["engine"] = engine_server(APPS / "image_server" / "image_server.toml", APPS / "image_server",
                                          {"cap": CAP, "max_inflight": 64}, name="engine ImageServer")
        started["plain"] = _plain("asyncio")
        started["plain-uvloop"] = _plain("auto")
        yield warmed(started, photo, WARMUP, CLIENTS, _is_jpeg)
    finally:
        codes = {variant: server.stop() for variant, server in started.items()}
    assert codes.get("engine") == 0, f"the engine app did not drain cleanly: {codes}\n{started['engine'].output()}"


def measured(url: str, pid: int, photo: bytes) -> dict:
    """One round, with the CPU time the server (its whole process tree) and this client used."""
    return closed_loop_cpu(url, photo, N, CLIENTS, pid, check=_is_jpeg)


@pytest.mark.benchmark(group="image_server")
@pytest.mark.parametrize("variant,round_", interleaved(ROUNDS))
def test_image_server(benchmark, servers, photo, variant, round_):
    url, pid, procs = servers[variant]
    result = benchmark.pedantic(measured, args=(url, pid, photo), rounds=1, iterations=1)
    assert result["errors"] == 0, result["first_error"]
    assert result["bad"] == 0, f"{result['bad']} answers were no JPEG"
    assert result["count"] == N
    benchmark.extra_info.update({
        "variant": variant, "round": round_ + 1, "unit": "requests/s", "rate": result["rate"],
        "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "mean_ms": result["mean_ms"],
        "server_cpu_ms": result["server_cpu_ms"], "client_cpu_ms": result["client_cpu_ms"],
        "requests": N, "clients": CLIENTS, "procs": procs, "photo": PHOTO_NAME, "photo_bytes": len(photo)})
