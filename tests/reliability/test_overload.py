"""Overload: many concurrent clients (raw sockets, 127.0.0.1) against an ImageServer app whose
channels are small (``cap = 4``) and whose front door takes ``max_pending = 32`` requests at once.

Asserted: every request is answered (a 200 with the flipped picture, or a 503 that carries
``Retry-After``), none hangs, and the resident memory of all the app's processes stays under the
bound below. Reported, not asserted: the p50/p99 latency of the accepted requests, the share refused,
and the latency of a light load before and after (recovery to full speed).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

import cv2
import numpy as np
import requests

from megflow_mp.supervisor import children_of
from tests.reliability.servers import ServerApp, free_port, write_app

SECTION = "Overload (ImageServer, cap = 4, max_pending = 32; raw-socket clients to 127.0.0.1)"
MAX_PENDING = 32
MEMORY_BOUND = 256 << 20  # bytes the app may grow by under the overload (all its processes together)
HANG = 120.0


def small_jpeg() -> bytes:
    img = np.zeros((96, 160, 3), np.uint8)
    img[:48] = (0, 0, 255)
    return cv2.imencode(".jpg", img)[1].tobytes()


def rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


async def one(port: int, body: bytes, start: asyncio.Event) -> tuple:
    """(status, retry_after, seconds) of one POST on its own connection; status 0: no answer."""
    await start.wait()
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
    except (OSError, asyncio.TimeoutError) as exc:
        return 0, None, time.monotonic() - t0, f"connect: {exc!r}"
    try:
        writer.write(b"POST /analyze/load HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), HANG)
    except (OSError, asyncio.TimeoutError) as exc:
        return 0, None, time.monotonic() - t0, f"{type(exc).__name__}"
    finally:
        writer.close()
    took = time.monotonic() - t0
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    try:
        status = int(head[0].split()[1])
    except (IndexError, ValueError):
        return 0, None, took, f"no status line: {raw[:80]!r}"
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
    return status, headers.get("retry-after"), took, None


async def burst(port: int, body: bytes, clients: int) -> list[tuple]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(one(port, body, start)) for _ in range(clients)]
    await asyncio.sleep(0)
    start.set()
    return await asyncio.gather(*tasks)


def light(url: str, body: bytes, n: int = 20) -> float:
    """Median seconds of ``n`` requests one after another."""
    times = []
    with requests.Session() as s:
        for _ in range(n):
            t0 = time.monotonic()
            r = s.post(f"{url}/analyze/x", data=body, headers={"Content-Type": "image/jpeg"}, timeout=60)
            assert r.status_code == 200, r.text
            times.append(time.monotonic() - t0)
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def test_overload_is_refused_with_retry_after_and_memory_stays_bounded(tmp_path, sizes, figures):
    body = small_jpeg()
    port = free_port()
    pkg = write_app(tmp_path, "ImageServer", port, host="127.0.0.1", max_pending=MAX_PENDING, timeout=60)
    toml = pkg / f"{pkg.name}.toml"
    toml.write_text(toml.read_text().replace("cap = 16", "cap = 4"))
    with ServerApp(pkg, port, tmp_path) as app:
        pids = [app.proc.pid, *children_of(app.proc.pid)]
        before = light(app.url, body)
        base = rss(pids)
        peak, sampling = [base], threading.Event()

        def sample():
            while not sampling.wait(0.05):
                peak.append(rss(pids))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rounds = []
        for _ in range(3):
            rounds += asyncio.run(burst(app.port, body, sizes.overload_clients))
        sampling.set()
        sampler.join()
        after = light(app.url, body)
        alive = app.workers_alive()
    statuses: dict[int, int] = {}
    for status, *_ in rounds:
        statuses[status] = statuses.get(status, 0) + 1
    unanswered = [r for r in rounds if r[0] == 0]
    no_retry = [r for r in rounds if r[0] == 503 and not r[1]]
    other = [r for r in rounds if r[0] not in (0, 200, 503)]
    accepted = [r[2] for r in rounds if r[0] == 200]
    grew = max(peak) - base
    notes = [f"statuses {statuses}; first unanswered {unanswered[:1]}",
             f"accepted requests: p50 {percentile(accepted, 0.5) * 1000:.0f} ms, p99 "
             f"{percentile(accepted, 0.99) * 1000:.0f} ms, max {max(accepted, default=0) * 1000:.0f} ms",
             f"refused 503: {statuses.get(503, 0) / len(rounds):.0%}, each with Retry-After: {not no_retry}",
             f"resident memory of the app's {len(pids)} processes: {base / 2**20:.0f} MiB before, peak "
             f"{max(peak) / 2**20:.0f} MiB (+{grew / 2**20:.0f} MiB; bound +{MEMORY_BOUND >> 20} MiB)",
             f"light load (one client): median {before * 1000:.1f} ms before, {after * 1000:.1f} ms after"]
    row = figures.add(SECTION, f"3 bursts of {sizes.overload_clients} concurrent clients: every request answered "
                      "200 or 503 + Retry-After, memory under the bound, workers alive", len(rounds),
                      len(rounds) - len(unanswered) - len(no_retry) - len(other),
                      len(unanswered) + len(no_retry) + len(other) + int(grew > MEMORY_BOUND) + int(not alive), notes)
    assert row.lost == 0, row.notes
