"""Reading a run's snapshots: the Prometheus exposition of ``/metrics`` and the dashboard's summary.

Every process of the run wrote ``proc-<index>.json`` into the run directory (:mod:`.sampler`);
the supervisor wrote ``run.json`` (its pid). A scrape reads them all, adds ``node`` and ``replica``
to each series, and reads each process's resident memory and CPU time from ``/proc`` (processes
that are gone are left out). Counters are totals since the process started (carried over a
restart), gauges are as of the process's last snapshot (at most ``interval`` seconds old).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .catalog import BUCKETS, BY_NAME, METRICS

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
SUPERVISOR = "supervisor"


def read_snapshots(directory: Path) -> list[dict]:
    """The snapshots of the run's processes, by process index (files being replaced are skipped)."""
    out = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return out
    for name in names:
        if name.startswith("proc-") and name.endswith(".json"):
            try:
                out.append(json.loads((directory / name).read_text()))
            except (OSError, ValueError):
                pass
    return sorted(out, key=lambda s: s["proc"])


def supervisor_pid(directory: Path) -> int | None:
    try:
        return int(json.loads((directory / "run.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def process_usage(pid: int) -> tuple[int, float] | None:
    """(resident bytes, CPU seconds) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None
    return rss, (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15 of stat)


def gather(directory: Path) -> tuple[list, list, list[dict]]:
    """``(series, hists, snapshots)`` of the whole run, every labels dict complete."""
    snaps = read_snapshots(directory)
    series, hists = [], []
    procs = [(s["node"], s["replica"], s["pid"]) for s in snaps]
    sup = supervisor_pid(directory)
    if sup is not None:
        procs.append((SUPERVISOR, 0, sup))
    for snap in snaps:
        base = {"node": snap["node"], "replica": str(snap["replica"])}
        for name, labels, value in snap["series"]:
            series.append((name, {**base, **labels}, value))
        for name, labels, counts, total in snap["hists"]:
            hists.append((name, {**base, **labels}, counts, total))
    for node, replica, pid in procs:
        usage = process_usage(pid)
        if usage is not None:
            labels = {"node": node, "replica": str(replica)}
            series.append(("megflow_process_resident_memory_bytes", labels, usage[0]))
            series.append(("megflow_process_cpu_seconds", labels, usage[1]))
    return series, hists, snaps


class RunCollector:
    """A prometheus-client collector of one run directory (registered in a fresh registry)."""

    def __init__(self, directory: Path):
        self.directory = directory

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        series, hists, _ = gather(self.directory)
        families = {}
        for m in METRICS:
            cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
                   "histogram": HistogramMetricFamily}[m.kind]
            families[m.name] = cls(m.name, m.help, labels=m.labels)
        for name, labels, value in series:
            m = BY_NAME[name]
            families[name].add_metric([labels.get(k, "") for k in m.labels], value)
        for name, labels, counts, total in hists:
            m = BY_NAME[name]
            cumulative, buckets = 0, []
            for bound, n in zip(list(BUCKETS[name]) + ["+Inf"], counts):
                cumulative += n
                buckets.append((bound if bound == "+Inf" else repr(float(bound)), cumulative))
            families[name].add_metric([labels.get(k, "") for k in m.labels], buckets, total)
        yield from families.values()


def exposition(directory: Path) -> tuple[bytes, str]:
    """``(body, content type)`` of ``/metrics`` for the run in ``directory``."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(directory))
    return generate_latest(registry), CONTENT_TYPE_LATEST
