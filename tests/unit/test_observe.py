"""megflow_mp.observe without processes: snapshots to the Prometheus exposition, front-door request
metrics by route template, the routes when metrics are off, the catalog's table."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse

from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from megflow_mp.observe.catalog import BUCKETS, METRICS, markdown_table
from megflow_mp.observe.collect import exposition
from megflow_mp.observe.exectime import Histogram
from megflow_mp.observe.http import HttpStats, MetricsMiddleware
from megflow_mp.observe.routes import add_routes
from megflow_mp.observe.snapshot import Builder


def get(app, path: str) -> tuple[int, str]:
    """``(status, body)`` of ``GET path`` sent to the ASGI ``app`` directly (no server, no client)."""
    parts = urllib.parse.urlsplit(path)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": urllib.parse.unquote(parts.path), "raw_path": parts.path.encode(), "root_path": "",
             "query_string": parts.query.encode(), "headers": [(b"host", b"test")], "client": ("127.0.0.1", 1),
             "server": ("test", 80)}
    out = {"status": None, "body": b""}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return out["status"], out["body"].decode()


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def write_snapshot(directory, proc: int, node: str, replica: int, builder: Builder) -> None:
    data = {"pid": os.getpid(), "proc": proc, "node": node, "replica": replica, "time": 0.0, "restarts": 0,
            **builder.result()}
    (directory / f"proc-{proc}.json").write_text(json.dumps(data))


def test_exposition_merges_every_process(tmp_path):
    hist = Histogram(BUCKETS["megflow_node_exec_seconds"])
    for value in (2e-5, 3e-3, 3e-3, 7.0):
        hist.observe(value)
    a = Builder({("megflow_node_envelopes_in", ()): 100})  # carried over a restart
    a.counter("megflow_node_envelopes_in", {}, 5)
    a.hist("megflow_node_exec_seconds", {}, hist)
    write_snapshot(tmp_path, 0, "g/work", 0, a)
    b = Builder()
    b.counter("megflow_node_envelopes_in", {}, 7)
    b.gauge("megflow_stream_state", {"stream": "3", "state": "running"}, 1)
    write_snapshot(tmp_path, 1, "g/work", 1, b)
    (tmp_path / "run.json").write_text(json.dumps({"pid": os.getpid()}))
    body, ctype = exposition(tmp_path)
    assert ctype.startswith("text/plain")
    got = samples(body.decode())
    node = (("node", "g/work"),)
    assert got[("megflow_node_envelopes_in_total", node + (("replica", "0"),))] == 105
    assert got[("megflow_node_envelopes_in_total", node + (("replica", "1"),))] == 7
    labels = node + (("replica", "0"),)
    assert got[("megflow_node_exec_seconds_count", labels)] == 4
    assert got[("megflow_node_exec_seconds_bucket", (("le", "0.005"),) + labels)] == 3  # cumulative
    assert got[("megflow_node_exec_seconds_bucket", (("le", "+Inf"),) + labels)] == 4
    assert abs(got[("megflow_node_exec_seconds_sum", labels)] - 7.00602) < 1e-9
    assert got[("megflow_stream_state", node + (("replica", "1"), ("state", "running"), ("stream", "3")))] == 1
    sup = (("node", "supervisor"), ("replica", "0"))
    assert got[("megflow_process_resident_memory_bytes", sup)] > 0  # this process, read from /proc
    assert got[("megflow_process_cpu_seconds_total", sup)] > 0


def test_requests_are_counted_by_route_template():
    app = FastAPI()

    @app.get("/items/{item}")
    async def item(item: int):
        return {"item": item}

    stats = HttpStats()
    app.add_middleware(MetricsMiddleware, stats=stats)
    assert get(app, "/items/1")[0] == 200
    assert get(app, "/items/2")[0] == 200
    assert get(app, "/items/x")[0] == 422
    assert get(app, "/nowhere")[0] == 404
    out = Builder()
    stats.export(out)
    counts = {(labels["route"], labels["status"]): v for name, labels, v in out.series
              if name == "megflow_http_requests"}
    assert counts == {("/items/{item}", "200"): 2, ("/items/{item}", "422"): 1, ("(unmatched)", "404"): 1}
    in_flight = [v for name, _, v in out.series if name == "megflow_http_requests_in_flight"]
    assert in_flight == [0]
    latency = {labels["route"]: sum(c) for name, labels, c, _ in out.hists}
    assert latency == {"/items/{item}": 3, "(unmatched)": 1}


def test_routes_say_when_metrics_are_off():
    app = FastAPI()
    add_routes(app, lambda: None)
    for path in ("/metrics", "/dashboard", "/dashboard/state", "/dashboard/graph.svg"):
        status, text = get(app, path)
        assert status == 404 and "metrics are off" in text, path
    assert get(app, "/dashboard/_assets/dashboard.js")[0] == 200
    assert get(app, "/dashboard/_assets/..%2Fsettings.py")[0] == 404


def test_catalog_table_lists_every_metric():
    table = markdown_table()
    for m in METRICS:
        name = m.name + ("_total" if m.kind == "counter" else "")
        assert f"| `{name}` | {m.kind} |" in table
    assert all(m.name in BUCKETS for m in METRICS if m.kind == "histogram")


def test_sweep_removes_only_directories_of_dead_supervisors():
    import shutil
    import subprocess
    import sys

    from megflow_mp.observe.run import sweep
    from megflow_mp.observe.settings import run_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    gone, alive = run_dir("test-sweep-gone"), run_dir("test-sweep-alive")
    try:
        for directory, pid in ((gone, int(dead.stdout)), (alive, os.getpid())):
            directory.mkdir(mode=0o700)
            (directory / "run.json").write_text(json.dumps({"pid": pid}))
        sweep()
        assert not gone.exists() and alive.exists()
    finally:
        for directory in (gone, alive):
            shutil.rmtree(directory, ignore_errors=True)
