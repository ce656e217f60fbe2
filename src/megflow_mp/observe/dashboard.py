"""The dashboard's data: the graph picture with room for live labels, and the live state.

:func:`graph_svg` renders :func:`megflow_mp.dump.to_dot` with ``dot -Tsvg``, each node that runs
(a node declaration: ``graph/name`` or ``@/name``, the SVG node's ``<title>``) given two more
label lines (as wide as :data:`ROOM`) that the page fills with its rate, queue fill and exec time. Rendered once per
process and app (the picture of a running app does not change).

:class:`Tracker` turns successive reads of the run's snapshots into what the page shows: per node
declaration (its replicas summed) envelopes in and out per second, queue depth and capacity, mean
exec time over the last interval, CPU load (CPU seconds per second per replica, 0..1 for a busy
replica), errors and restarts; per stream its state, fps, frames, drops, viewers and the port of
the server that shows it (``/view/{id}``); per sink replica where it delivers, whether the
destination is up, and its delivered, spooled, dropped and retried messages.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from ..video.spec import parse_sid, sid_order
from .collect import gather

_SVG: dict[int, str] = {}
# what the two live lines may hold at most: the node's box is drawn wide enough for them
ROOM = ("99.9k/s in, 99.9k/s out", "queue 999/999, exec 99.9 ms")


def graph_svg(app) -> str:
    """The SVG of ``app``'s graph (cached); raises RuntimeError when ``dot`` is missing or fails."""
    cached = _SVG.get(id(app))
    if cached is not None:
        return cached
    from ..dump import _q, to_dot

    text = to_dot(app)
    for key in app.decls:  # two more label lines on each node that runs: the live figures go there
        text = re.sub(re.escape(_q(key)) + r' \[label="((?:[^"\\]|\\.)*)"',
                      lambda m: f'{_q(key)} [label="{m.group(1)}\\n{ROOM[0]}\\n{ROOM[1]}"', text, count=1)
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("the graph picture needs graphviz's 'dot' program (apt-get install graphviz)")
    done = subprocess.run([dot, "-Tsvg"], input=text.encode(), capture_output=True, check=False, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    svg = done.stdout.decode()
    svg = svg[svg.find("<svg"):]  # no XML prolog or DOCTYPE: the page inlines it
    for room in ROOM:
        svg = svg.replace(f">{room}<", ">-<")
    _SVG[id(app)] = svg
    return svg


def _views(app) -> dict:
    """Node declaration -> the port its front door serves ``/view`` on (VideoServer nodes)."""
    out = {}
    for key, decl in app.decls.items():
        if decl.ntype.name == "VideoServer":
            out[key] = int(decl.args.get("port", 8080))
    return out


class Tracker:
    """Successive states of one run, with the rates between them. Thread-safe; a rate changes only
    when a process wrote a newer snapshot, so any number of pages may ask as often as they like."""

    def __init__(self, directory: Path, app):
        self.directory, self.app = directory, app
        self.lock = threading.Lock()
        self.views = _views(app)
        self.prev: dict = {}  # proc -> (snapshot time, in, out, exec count, exec sum, cpu, monotonic)
        self.rates: dict = {}  # proc -> (in/s, out/s, exec mean or None, cpu load)

    def state(self) -> dict:
        with self.lock:
            return self._state()

    def _state(self) -> dict:
        series, hists, snaps = gather(self.directory)
        now = time.monotonic()
        per: dict = {}  # (node, replica) -> values
        streams: dict = {}
        for name, labels, value in series:
            nr = (labels["node"], labels["replica"])
            if name.startswith("megflow_stream_"):
                s = streams.setdefault(nr + (labels["stream"],), {"node": nr[0], "id": parse_sid(labels["stream"])})
                short = name[len("megflow_stream_"):]
                if short == "state":
                    s["state"] = labels["state"]
                else:
                    s[short] = value
            else:
                per.setdefault(nr, {})[name] = value
        for name, labels, counts, total in hists:
            if name == "megflow_node_exec_seconds":
                per.setdefault((labels["node"], labels["replica"]), {})["exec"] = (sum(counts), total)
        times = {(s["node"], str(s["replica"])): s["time"] for s in snaps}
        for snap in snaps:
            for extra in snap.get("streams", []):
                key = (snap["node"], str(snap["replica"]), str(extra["id"]))
                if key in streams:
                    streams[key]["url"] = extra["url"]
                    for k in ("latency_p50_ms", "latency_p95_ms", "restarts"):
                        streams[key][k] = extra.get(k)
                    streams[key]["view_port"] = self.views.get(snap["node"]) if extra["live"] else None
        nodes: dict = {}
        for nr, v in per.items():
            cur = (times.get(nr), v.get("megflow_node_envelopes_in", 0), v.get("megflow_node_envelopes_out", 0),
                   *v.get("exec", (0, 0.0)), v.get("megflow_process_cpu_seconds", 0.0), now)
            old = self.prev.get(nr)
            if old is not None and cur[0] is not None and old[0] is not None and cur[0] > old[0]:
                dt, dcpu = cur[0] - old[0], cur[6] - old[6]
                n = cur[3] - old[3]
                self.rates[nr] = ((cur[1] - old[1]) / dt, (cur[2] - old[2]) / dt,
                                  (cur[4] - old[4]) / n if n > 0 else self.rates.get(nr, (0, 0, None))[2],
                                  (cur[5] - old[5]) / dcpu if dcpu > 0 else 0.0)
            if old is None or (cur[0] is not None and (old[0] is None or cur[0] > old[0])):
                self.prev[nr] = cur
            rate = self.rates.get(nr, (0.0, 0.0, None, 0.0))
            if nr[0] == "supervisor":
                continue
            d = nodes.setdefault(nr[0], {"replicas": 0, "in_rate": 0.0, "out_rate": 0.0, "queue": 0, "cap": 0,
                                         "exec": None, "load": 0.0, "errors": 0, "restarts": 0, "in": 0, "out": 0})
            d["replicas"] += 1
            d["in_rate"] += rate[0]
            d["out_rate"] += rate[1]
            d["in"] += v.get("megflow_node_envelopes_in", 0)
            d["out"] += v.get("megflow_node_envelopes_out", 0)
            d["queue"] += v.get("megflow_node_queue_depth", 0)
            d["cap"] += v.get("megflow_node_queue_capacity", 0)
            d["errors"] += v.get("megflow_node_errors", 0)
            d["restarts"] += v.get("megflow_node_restarts", 0)
            d["load"] = max(d["load"], rate[3])
            if rate[2] is not None:
                d["exec"] = rate[2] if d["exec"] is None else max(d["exec"], rate[2])
        return {"time": time.time(), "nodes": nodes,
                "streams": sorted(streams.values(), key=lambda s: (s["node"], sid_order(s["id"]))),
                "sinks": _sinks(per, snaps)}


def _sinks(per: dict, snaps: list) -> list[dict]:
    """One row per sink replica: where it delivers (no secrets), up or down, and its counters."""
    rows = []
    for snap in snaps:
        v = per.get((snap["node"], str(snap["replica"])), {})
        for extra in snap.get("sinks", []):
            rows.append({"node": snap["node"], "replica": snap["replica"], "kind": extra["kind"], "to": extra["to"],
                         "state": extra["state"], "error": extra["error"],
                         "delivered": v.get("megflow_sink_delivered", 0), "retries": v.get("megflow_sink_retries", 0),
                         "spooled": v.get("megflow_sink_spooled_messages", 0),
                         "dropped": v.get("megflow_sink_dropped", 0)})
    return sorted(rows, key=lambda r: (r["node"], r["replica"]))


_TRACKERS: dict = {}
_TRACKERS_LOCK = threading.Lock()


def tracker_of(directory: Path, app) -> Tracker:
    """The :class:`Tracker` of a run in this process (one per run directory)."""
    with _TRACKERS_LOCK:
        t = _TRACKERS.get(directory)
        if t is None or t.app is not app:
            t = _TRACKERS[directory] = Tracker(directory, app)
        return t
