"""The snapshot a process writes (:mod:`.sampler`) and the scraper reads (:mod:`.collect`).

A JSON object: ``pid``, ``proc`` (process index), ``node`` and ``replica`` (the labels every series
of the process gets), ``time`` (wall clock), ``restarts``, ``series`` (``[name, labels, value]``:
counters and gauges), ``hists`` (``[name, labels, bucket counts, sum]``, the counts per bucket of
:data:`.catalog.BUCKETS`, not cumulative, the last one ``+Inf``) and what the dashboard shows
besides (``streams``: id, url with its secrets as ``***``, whether it has a live view). ``labels`` hold only the labels
beyond ``node`` and ``replica``.
"""

from __future__ import annotations


def key(name: str, labels: dict) -> tuple:
    return (name, tuple(sorted(labels.items())))


class Builder:
    """Collects one snapshot's series; ``base`` (carried over a restart) is added to counters."""

    def __init__(self, base: dict | None = None):
        self.base = base or {}
        self.series: list = []
        self.hists: list = []
        self.extra: dict = {}

    def counter(self, name: str, labels: dict, value: float) -> None:
        self.series.append([name, labels, value + self.base.get(key(name, labels), 0)])

    def gauge(self, name: str, labels: dict, value: float) -> None:
        self.series.append([name, labels, value])

    def hist(self, name: str, labels: dict, hist) -> None:
        counts, total = list(hist.counts), hist.sum
        carried = self.base.get(key(name, labels))
        if carried:
            counts = [a + b for a, b in zip(counts, carried[0])]
            total += carried[1]
        self.hists.append([name, labels, counts, total])

    def result(self) -> dict:
        return {"series": self.series, "hists": self.hists, **self.extra}
