"""Sinks in real apps: VideoInput streams (a fast batch source) through per-stream and shared sinks to a
real HTTP receiver, mosquitto, redis and a file; the receiver stopped mid-run; the app SIGKILLed
mid-delivery and started again; bad sink config; the metrics."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from megflow_mp.sinks.log import pending
from megflow_mp.supervisor import children_of
from tests.integration.conftest import run_cli, start_cli, write_app
from tests.support.clips import make_clip
from tests.support.mosquitto import Mosquitto
from tests.support.receiver import Receiver
from tests.support.redis import RedisServer

FRAMES, STREAMS = 300, 4

NODES = """
from megflow import register

@register(inputs=["inp"], outputs=["out"])
class Info:
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        self.out.send(e.repack({"frame": e.partial_id}))
"""

APP = """
main = "main"
{shared}
[[graphs]]
name = "sub"
inputs = [{{ name = "inp", cap = 16, ports = ["info:inp"] }}]
outputs = [{{ name = "out", cap = 16, ports = ["{last}:out"] }}]
connections = [{connections}]
    [[graphs.nodes]]
    name = "info"
    ty = "Info"
{per_stream}
[[graphs]]
name = "main"
connections = [
  {{ cap = 16, ports = ["source:out", "destination:inp"] }},
  {{ cap = 16, ports = ["source:inp", "destination:out"] }},
]
    [[graphs.nodes]]
    name = "source"
    ty = "VideoInput"
    urls = ["{clip}"]
    repeat = {streams}
    [[graphs.nodes]]
    name = "destination"
    ty = "sub"
"""


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("sinkclips") / "small.mp4", frames=FRAMES, size=(64, 48), gop=50)


def toml_value(v) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {json.dumps(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


def node(name, ty, **args) -> str:
    return "\n".join([f'name = "{name}"', f'ty = "{ty}"'] + [f"{k} = {toml_value(v)}" for k, v in args.items()])


def app(tmp_path, clip, chain: list[tuple[str, bool]], nodes: dict[str, str]) -> str:
    """``chain``: (node name, shared) after ``info``, in order."""
    names = ["info"] + [n for n, _ in chain]
    conns = ", ".join(f'{{ cap = 16, ports = ["{a}:out", "{b}:inp"] }}' for a, b in zip(names, names[1:]))
    shared = "\n".join(f"[[nodes]]\n{nodes[n]}" for n, s in chain if s)
    per = "\n".join("    [[graphs.nodes]]\n" + "\n".join("    " + line for line in nodes[n].splitlines())
                    for n, s in chain if not s)
    toml = APP.format(shared=shared, last=names[-1], connections=conns, per_stream=per, clip=clip, streams=STREAMS)
    pkg = write_app(tmp_path, "sinkapp", {"sinkapp.toml": toml, "nodes.py": NODES})
    return str(pkg / "sinkapp.toml")


def firsts(records, stream):
    """The seqs of ``stream`` in order of their first delivery."""
    return list(dict.fromkeys(r["seq"] for r in records if r["stream"] == stream))


def check_stream_order(records, first_run_seqs=None):
    for s in range(STREAMS):
        seqs = firsts(records, s)
        assert seqs == sorted(seqs), f"stream {s} out of order"
        by_seq = {r["seq"]: r["message"]["frame"] for r in records if r["stream"] == s}
        assert all(by_seq[q] == q % FRAMES or first_run_seqs for q in seqs)
    return {s: firsts(records, s) for s in range(STREAMS)}


def test_every_sink_delivers_every_message_of_every_stream_in_order(tmp_path, clip):
    with Receiver() as rx, Mosquitto() as broker, RedisServer() as rs:
        sub = broker.subscribe("cams/#")
        out = tmp_path / "events.jsonl"
        nodes = {
            "hook": node("hook", "WebhookSink", url=rx.url, batch=20, linger_ms=5, spool_dir=str(tmp_path / "s1")),
            "mq": node("mq", "MqttSink", port=broker.port, topic="cams/{stream}", spool_dir=str(tmp_path / "s2")),
            "xs": node("xs", "RedisStreamSink", url=rs.url, key="ev", spool_dir=str(tmp_path / "s3")),
            "jl": node("jl", "JsonlSink", path=str(out), spool_dir=str(tmp_path / "s4")),
        }
        cfg = app(tmp_path, clip, [("hook", False), ("mq", True), ("xs", True), ("jl", False)], nodes)
        t0 = time.monotonic()
        r = run_cli("run", cfg, timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        took = time.monotonic() - t0
        got = {
            "hook": rx.records(),
            "xs": [json.loads(f["data"]) for _, f in rs.client().xrange("ev")],
            "jl": [json.loads(line) for line in out.read_text().splitlines()],
        }
        deadline = time.monotonic() + 10
        while len(sub.payloads()) < FRAMES * STREAMS and time.monotonic() < deadline:
            time.sleep(0.05)
        got["mq"] = [json.loads(p) for p in sub.payloads()]
        for name, records in got.items():
            per = check_stream_order(records)
            assert all(seqs == list(range(FRAMES)) for seqs in per.values()), name
            assert {r["id"].split("/")[0] for r in records} == {name}
        assert {t for t, _ in sub.got} == {f"cams/{s}" for s in range(STREAMS)}
        print(f"{FRAMES * STREAMS} messages through 4 sinks in {took:.1f} s")


def test_receiver_down_then_app_killed_mid_delivery_and_started_again_loses_nothing(tmp_path, clip):
    spool = tmp_path / "spool"
    with Receiver(delay=0.1) as rx:
        nodes = {"hook": node("hook", "WebhookSink", url=rx.url, batch=10, spool_dir=str(spool), retry_min=0.05,
                              retry_max=0.2, drain_timeout=60)}
        cfg = app(tmp_path, clip, [("hook", False)], nodes)
        proc = start_cli("run", cfg)
        try:
            deadline = time.monotonic() + 60
            while len(rx.records()) < 30:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.02)
            rx.stop()  # the receiver down for a while mid-run
            time.sleep(1.0)
            rx.start()
            total = FRAMES * STREAMS
            while len({r["id"] for r in rx.records()}) + pending(spool) < total + 10:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.02)
            time.sleep(0.3)
            delivered_before = len({r["id"] for r in rx.records()})
            assert delivered_before < total - 100  # mid-delivery
            for pid in children_of(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        rx.delay = 0
        r = run_cli("run", cfg, timeout=180)  # the same app again: the spool first, then its own messages
        assert r.returncode == 0, r.stderr[-3000:]
        records = rx.records()
        for s in range(STREAMS):
            seqs = firsts(records, s)
            assert seqs == sorted(seqs), f"stream {s} out of order"
            assert seqs[:FRAMES] == list(range(FRAMES)), f"stream {s}: a message of the first run was lost"
            second = seqs[FRAMES:]
            assert len(second) == FRAMES and second == list(range(second[0], second[0] + FRAMES))
            assert FRAMES <= second[0] < FRAMES + 1000
        assert pending(spool) == 0


def test_bad_sink_config_is_one_line_and_an_unreachable_url_only_warns(tmp_path, clip):
    env_missing = {"hook": node("hook", "WebhookSink", url="http://127.0.0.1:9/x",
                                headers={"Authorization": "env:SINK_TEST_NO_SUCH_TOKEN"})}
    r = run_cli("run", app(tmp_path / "a", clip, [("hook", True)], env_missing), timeout=60)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if "SINK_TEST_NO_SUCH_TOKEN" in line]
    assert len(lines) == 1 and "WebhookSink 'hook': headers.Authorization: environment variable" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    bad_topic = {"mq": node("mq", "MqttSink", topic="cams/{camera}")}
    r = run_cli("run", app(tmp_path / "b", clip, [("mq", True)], bad_topic), timeout=60)
    assert r.returncode != 0 and "MqttSink 'mq': topic: bad template" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    # per stream: checked when the first stream's subgraph instance is built, which fails with that line
    r = run_cli("run", app(tmp_path / "c", clip, [("mq", False)], bad_topic), timeout=60)
    assert r.returncode != 0 and "MqttSink 'mq': topic: bad template 'cams/{camera}'" in r.stderr

    os.environ["SINK_TEST_TOKEN"] = "very-secret-token"
    try:
        down = {"hook": node("hook", "WebhookSink", url="http://user:pw-in-url@127.0.0.1:9/x", drain_timeout=0.5,
                             headers={"Authorization": "env:SINK_TEST_TOKEN"}, spool_dir=str(tmp_path / "sp"))}
        r = run_cli("run", app(tmp_path / "d", clip, [("hook", True)], down), timeout=120)
    finally:
        del os.environ["SINK_TEST_TOKEN"]
    assert r.returncode == 0, r.stderr[-2000:]
    warn = [line for line in r.stderr.splitlines() if "is not accepting messages" in line]
    assert len(warn) == 1 and "http://127.0.0.1:9/x" in warn[0]
    assert "very-secret" not in r.stderr and "pw-in-url" not in r.stderr
    assert pending(tmp_path / "sp") == FRAMES * STREAMS


def test_sink_metrics_and_dashboard_rows_while_the_destination_refuses_then_accepts(tmp_path, clip):
    import requests

    from tests.integration.conftest import free_port
    from tests.integration.test_metrics import scrape, total, wait_for

    os.environ["SINK_TEST_TOKEN2"] = "metric-secret-token"
    try:
        with Receiver(status=503) as rx:
            nodes = {"hook": node("hook", "WebhookSink", url=rx.url, batch=50, spool_dir=str(tmp_path / "sp"),
                                  retry_min=0.05, retry_max=0.2, drain_timeout=60,
                                  headers={"Authorization": "env:SINK_TEST_TOKEN2"})}
            port = free_port()
            proc = start_cli("run", app(tmp_path, clip, [("hook", True)], nodes), "--metrics-port", port)
            base = f"http://127.0.0.1:{port}"
            try:
                wait_for(lambda: (s := scrape(base)) and total(s, "megflow_sink_spooled_messages", node="@/hook")
                         == FRAMES * STREAMS and total(s, "megflow_sink_retries_total", node="@/hook") > 2,
                         what="every message spooled, retries counted")
                state = requests.get(f"{base}/dashboard/state", timeout=10)
                rows = state.json()["sinks"]
                assert [(r["node"], r["kind"], r["state"], r["to"]) for r in rows] == \
                    [("@/hook", "WebhookSink", "down", rx.url)]
                assert "metric-secret" not in state.text + requests.get(f"{base}/metrics", timeout=10).text
                rx.delay, rx.status = 0.3, 200  # 24 batches: the app lives a few seconds more
                s = wait_for(lambda: (s := scrape(base)) and total(s, "megflow_sink_delivered_total", node="@/hook")
                             >= 100 and s, what="deliveries counted")
                assert total(s, "megflow_sink_delivery_seconds_count", node="@/hook") >= 100
                assert total(s, "megflow_sink_dropped_total", node="@/hook") == 0
                proc.communicate(timeout=60)
                assert len({r["id"] for r in rx.records()}) == FRAMES * STREAMS
                assert proc.returncode == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    finally:
        del os.environ["SINK_TEST_TOKEN2"]
    check_stream_order(rx.records())
