"""Stream churn: start/stop cycles on a VideoServer app from 8 clients at once. After a warm-up,
the anonymous resident memory of the workers may grow by less than 2%; the process count, the
memfd shared-memory segments the workers hold and their open file descriptors stop growing (the
frame pool may grow to the peak of 8 streams at once, so they are compared half-way and at the end).

What is measured is memory kept per stream started, not what the app holds by design for a while:
the app keeps 16 ended streams in /list (``history``), the last 64 messages for ``/events`` and 16 of a
stream (``events_buffer_all``, ``events_buffer``), and an ended stream's metrics for 1 s
(``MEGFLOW_MP_METRICS_RETENTION``), and memory is read once the workers have settled (a worker
gives its free heap back within half a second of an instance's end, see megflow_mp.runtime.malloc).
The warm-up is twice the measured run (at least 500 cycles): the allocators' high-water marks for 8
streams at once (Python's arenas in the per-stream node's worker; the free tops of the malloc arenas
the decode threads used, which glibc does not trim below its raised trim threshold) climb for the
first few hundred cycles, then barely.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.parse

import requests

from megflow_mp.supervisor import children_of
from tests.reliability.servers import ServerApp, wait_until
from tests.support.clips import make_clip
from tests.support.procfs import proc_name

SECTION = "Stream churn (VideoServer: start, stop, read the messages; 8 clients at once)"
CLIENTS = 8
SETTLE = 0.8  # s: a worker gives its free heap back within half a second of an instance's end


def rss_anon_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))
    return total


def fds(pids: list[int]) -> tuple[int, int]:
    """(open descriptors, of which memfd segments) of ``pids``."""
    n = memfd = 0
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            n += 1
            memfd += target.startswith("/memfd:")
    return n, memfd


def churn(url: str, clip, cycles: int) -> list[str]:
    """``cycles`` start/stop cycles spread over :data:`CLIENTS` threads; the problems seen."""
    quoted = urllib.parse.quote(str(clip), safe="")
    problems, lock = [], threading.Lock()

    def client(n: int) -> None:
        with requests.Session() as s:
            for _ in range(n):
                r = s.post(f"{url}/start/{quoted}", timeout=30)
                if r.status_code != 200:
                    with lock:
                        problems.append(f"start: {r.status_code} {r.text[:100]}")
                    continue
                sid = int(r.text.rsplit(" ", 1)[1])
                s.post(f"{url}/stop/{sid}", timeout=30)

                def ended():
                    r = s.get(f"{url}/list", timeout=30)
                    if r.status_code != 200 or not r.text.startswith("["):
                        with lock:
                            problems.append(f"/list: {r.status_code} {r.headers.get('content-type')} {r.text[:200]!r}")
                        return False
                    info = [x for x in r.json() if x["id"] == sid]
                    return not info or info[0]["state"] in ("stopped", "finished", "error")

                if not wait_until(ended, 30, step=0.01):
                    with lock:
                        problems.append(f"stream {sid} did not stop")
                s.get(f"{url}/get_msgs/{sid}", timeout=30)

    per = [cycles // CLIENTS + (i < cycles % CLIENTS) for i in range(CLIENTS)]
    threads = [threading.Thread(target=client, args=(n,)) for n in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return problems


def settled_rss(url: str, clip, workers: list[int], problems: list[str]) -> list[int]:
    """Each worker's anonymous RSS once settled: the lowest of 3 readings, each taken :data:`SETTLE` s
    after a round of one cycle per client. What glibc keeps of the malloc arenas that the latest
    streams' threads used (free memory at the top of an arena goes back only above glibc's trim
    threshold) lifts a reading by 0-3 MB from one such moment to the next; memory kept per stream
    lifts every reading."""
    readings = []
    for _ in range(3):
        problems += churn(url, clip, CLIENTS)
        time.sleep(SETTLE)
        readings.append([rss_anon_kib([p]) for p in workers])
    return [min(r[i] for r in readings) for i in range(len(workers))]


def test_start_stop_churn_leaves_memory_processes_and_shared_memory_flat(tmp_path, sizes, figures, monkeypatch):
    monkeypatch.setenv("MEGFLOW_MP_METRICS_RETENTION", "1")
    clips = tmp_path / "clips"
    clip = make_clip(clips / "short.mp4", frames=10, size=(320, 180))
    with ServerApp.start(tmp_path, "VideoServer", allow_dirs=[str(clips)], history=16,
                         events_buffer=16, events_buffer_all=64) as app:
        workers = sorted(children_of(app.proc.pid))
        names = [proc_name(pid) for pid in workers]  # mf:<node>
        warm = max(500, 2 * sizes.churn_cycles)
        t0 = time.monotonic()
        problems = churn(app.url, clip, warm)  # allocator pools and arenas, caches
        each_before, start_fds = settled_rss(app.url, clip, workers, problems), fds(workers)
        problems += churn(app.url, clip, sizes.churn_cycles // 2)
        time.sleep(0.5)
        fd_before, memfd_before = fds(workers)  # the frame pool may have grown to the peak of 8 streams
        problems += churn(app.url, clip, sizes.churn_cycles - sizes.churn_cycles // 2)
        took = time.monotonic() - t0
        each_after = settled_rss(app.url, clip, workers, problems)
        settled = wait_until(lambda: all(now <= then for now, then in zip(fds(workers), (fd_before, memfd_before))),
                             10, step=0.1)
        fd_after, memfd_after = fds(workers)
        procs_after = sorted(children_of(app.proc.pid))
        alive = app.workers_alive()
    rss_before, rss_after = sum(each_before), sum(each_after)
    growth = rss_after / rss_before - 1
    notes = [f"workers' anonymous RSS {rss_before:.0f} KiB after {warm} warm-up cycles, {rss_after:.0f} KiB after "
             f"{sizes.churn_cycles} more ({growth:+.2%}; bound +2%); per worker "
             f"{', '.join(f'{n} {a:.0f} -> {b:.0f}' for n, a, b in zip(names, each_before, each_after))} KiB "
             f"(each the lowest of 3 settled readings)",
             f"processes {len(workers)} -> {len(procs_after)}; memfd segments {start_fds[1]} after the warm-up, "
             f"{memfd_before} half-way, {memfd_after} at the end; open descriptors {start_fds[0]}, {fd_before}, "
             f"{fd_after} (settled: {settled})",
             f"{(warm + sizes.churn_cycles) / took:.1f} cycles/s; problems {problems[:3]}"]
    leaks = len(problems) + int(procs_after != workers) + int(not alive) + int(memfd_after > memfd_before) \
        + int(fd_after > fd_before)
    row = figures.add(SECTION, f"{sizes.churn_cycles} start/stop cycles after {warm} warm-up cycles: memory, "
                      "processes back; shared memory and descriptors not growing", sizes.churn_cycles,
                      sizes.churn_cycles - len(problems), leaks + int(growth >= 0.02), notes)
    assert leaks == 0 and growth < 0.02, row.notes
