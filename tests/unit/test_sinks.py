"""Sinks in-process: the delivery contract, seq across restarts, the bounded spool, retries, secrets,
one-line config errors, and each sink against its real destination (a file, an HTTP receiver,
redis, mosquitto) with the destination down for a while."""

from __future__ import annotations

import json
import logging
import time

import pytest

from megflow_mp import Envelope
from megflow_mp.observe.snapshot import Builder
from megflow_mp.sinks import GAP, SeqBook, SinkConfigError, backoff, make_record
from megflow_mp.sinks.config import Args, common_args
from megflow_mp.sinks.jsonl import JsonlFile
from megflow_mp.sinks.log import pending
from megflow_mp.sinks.outlet import Outlet
from megflow_mp.sinks.webhook import Webhook, sign
from megflow_mp.spool import Spool
from megflow_mp.testing import run_node
from tests.support.receiver import Receiver


def envs(n, streams=(0, 1, 2)):
    return [Envelope.pack({"i": i}, {"from_addr": s, "partial_id": i}) for i in range(n) for s in streams]


def wait_until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def check_in_order(records, streams, n):
    """Each stream's messages all there, first deliveries in seq order (duplicates allowed)."""
    for s in streams:
        seqs = [r["seq"] for r in records if r["stream"] == s]
        firsts = list(dict.fromkeys(seqs))
        assert firsts == sorted(firsts) and len(firsts) == n, (s, firsts[:20])
        assert [r["message"]["i"] for r in records if r["stream"] == s][:1] == [0]


def test_record_shape_and_id():
    r = make_record("hook", 3, 7, {"a": 1}, ts=1.5)
    assert r == {"stream": 3, "seq": 7, "ts": 1.5, "message": {"a": 1}, "id": "hook/3/7"}
    assert make_record("hook", None, 0, 42)["message"] == "42" and make_record("hook", None, 0, 1)["id"] == "hook/null/0"


def test_seq_continues_after_a_gap_when_killed_and_exactly_after_a_clean_stop(tmp_path):
    book = SeqBook(tmp_path)
    assert [book.take(0) for _ in range(5)] == [0, 1, 2, 3, 4] and book.take("cam") == 0
    killed = SeqBook(tmp_path)  # no close(): what a SIGKILL leaves
    assert killed.take(0) == GAP and killed.take("cam") == GAP
    killed.close()
    assert SeqBook(tmp_path).take(0) == GAP + 1


def test_backoff_is_full_jitter_under_a_cap():
    assert backoff(0, 0.1, 5, rng=lambda: 1.0) == pytest.approx(0.1)
    assert backoff(3, 0.1, 5, rng=lambda: 1.0) == pytest.approx(0.8)
    assert backoff(20, 0.1, 5, rng=lambda: 1.0) == 5 and backoff(20, 0.1, 5, rng=lambda: 0.0) == 0


@pytest.mark.parametrize("args, needle", [
    ({"url": "ftp://x/y"}, "WebhookSink 'hook': url: expected http"),
    ({"url": "http://h:99999/"}, "WebhookSink 'hook': url: not a URL"),
    ({"url": "http://h/", "headers": {"Authorization": "env:NO_SUCH_VAR_X"}},
     "WebhookSink 'hook': headers.Authorization: environment variable NO_SUCH_VAR_X is not set"),
    ({"url": "http://h/", "secret": "file:/no/such/file"}, "WebhookSink 'hook': secret: cannot read /no/such/file"),
    ({"url": "http://h/", "batch": 0}, "WebhookSink 'hook': batch: must be at least 1"),
])
def test_a_bad_webhook_argument_is_one_line_naming_node_and_argument(args, needle):
    with pytest.raises(SinkConfigError) as info:
        run_node("WebhookSink", args=args, name="hook", inputs={"inp": []})
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_bad_topic_or_missing_password_env_is_one_line(monkeypatch):
    with pytest.raises(SinkConfigError, match=r"MqttSink 'm': topic: bad template .*\{camera\}"):
        run_node("MqttSink", args={"topic": "a/{camera}"}, name="m", inputs={"inp": []})
    with pytest.raises(SinkConfigError, match="MqttSink 'm': topic: .*wildcard"):
        run_node("MqttSink", args={"topic": "a/#"}, name="m", inputs={"inp": []})
    with pytest.raises(SinkConfigError, match="MqttSink 'm': password: environment variable MQ_PW_X is not set"):
        run_node("MqttSink", args={"username": "u", "password": "env:MQ_PW_X"}, name="m", inputs={"inp": []})
    with pytest.raises(SinkConfigError, match="RedisStreamSink 'r': url: expected redis://"):
        run_node("RedisStreamSink", args={"url": "http://x"}, name="r", inputs={"inp": []})
    with pytest.raises(SinkConfigError, match="JsonlSink 'j': path: required"):
        run_node("JsonlSink", args={}, name="j", inputs={"inp": []})


def test_jsonl_sink_writes_every_stream_in_order_passes_envelopes_on_and_rotates(tmp_path):
    path = tmp_path / "out" / "events.jsonl"
    out = run_node("JsonlSink", name="j", args={"path": str(path), "spool_dir": str(tmp_path / "spool"),
                                                 "max_bytes": 10_000, "backups": 50},
                   inputs={"inp": envs(200)})
    assert len(out["out"]) == 600 and out["out"][0].msg == {"i": 0}
    files = sorted(path.parent.iterdir(), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    assert len(files) > 3 and all(p.stat().st_size <= 10_000 for p in files)
    records = [json.loads(line) for p in files for line in p.read_text().splitlines()]
    check_in_order(records, (0, 1, 2), 200)
    assert {r["id"] for r in records} == {f"j/{s}/{i}" for s in range(3) for i in range(200)}
    assert pending(tmp_path / "spool") == 0 and not list((tmp_path / "spool").glob("*.seg"))


def outlet(kind_cls, args, tmp_path, **common):
    a = Args(kind_cls.kind, "n", {**args, **common})
    c = common_args(a, batch=args.get("batch", 1))
    return Outlet(kind_cls.kind, "n", "n", kind_cls(a, c, "n"), c, tmp_path / "spool")


def test_webhook_signs_sends_env_headers_and_survives_an_outage(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HOOK_TOKEN", "tok-123-secret")
    (tmp_path / "key").write_text("hmac-key-xyz\n")
    with Receiver() as rx:
        rx.stop()  # down at start: a warning, the spool takes over
        o = outlet(Webhook, {"url": rx.url, "headers": {"Authorization": "env:HOOK_TOKEN"},
                             "secret": f"file:{tmp_path / 'key'}", "batch": 10}, tmp_path,
                   retry_min=0.01, retry_max=0.05)
        with caplog.at_level(logging.INFO, logger="megflow_mp"):
            for e in envs(100):
                o.put(e.from_addr, e.msg)
            wait_until(lambda: o.retries >= 3)
            assert len(o.spool) == 300
            rx.start()
            wait_until(lambda: o.delivered == 300)
            o.close()
        check_in_order(rx.records(), (0, 1, 2), 100)
        for sig, body in rx.signatures:
            assert sig == "sha256=" + sign("hmac-key-xyz", body)
        assert rx.headers[0]["Authorization"] == "tok-123-secret"
        text = caplog.text
        assert text.count("is not accepting messages") == 1 and "accepts messages again" in text
        assert "tok-123" not in text and "hmac-key" not in text
        b = Builder()
        o.export(b)
        series = {name: value for name, _, value in b.series}
        assert series["megflow_sink_delivered"] == 300 and series["megflow_sink_retries"] >= 3
        assert series["megflow_sink_spooled_messages"] == 0 and "tok-123" not in json.dumps(b.result())


def test_a_full_spool_drops_the_oldest_counts_and_logs_once(tmp_path, caplog):
    with Receiver() as rx:
        rx.status = 503
        o = outlet(Webhook, {"url": rx.url}, tmp_path, spool_max_bytes=20_000, retry_min=0.01, retry_max=0.02)
        with caplog.at_level(logging.INFO, logger="megflow_mp"):
            for i in range(1000):
                o.put(0, {"i": i})
            assert o.spool.dropped > 500 and o.spool.bytes <= 20_000
            assert caplog.text.count("the spool is full") == 1
            rx.status = 200
            wait_until(lambda: len(o.spool) == 0)
            o.close()
        seqs = [r["seq"] for r in rx.records()]
        assert seqs == sorted(seqs) and seqs[-1] == 999 and len(set(seqs)) == 1000 - o.spool.dropped
        assert "were dropped while the spool was full" in caplog.text


def test_a_slow_destination_does_not_slow_the_sender(tmp_path):
    with Receiver(delay=0.05) as rx:
        o = outlet(Webhook, {"url": rx.url}, tmp_path)
        t0 = time.perf_counter()
        for i in range(500):
            o.put(0, {"i": i})
        assert time.perf_counter() - t0 < 2.0  # 500 deliveries take >= 25 s; the puts far less
        assert o.delivered < 100
        o.common = o.common.__class__(**{**o.common.__dict__, "drain_timeout": 0.2})
        o.close()
    assert pending(tmp_path / "spool") > 300  # left for the next start


def test_what_is_left_is_delivered_by_the_next_start(tmp_path):
    path = tmp_path / "f.jsonl"
    first = outlet(JsonlFile, {"path": str(path)}, tmp_path)
    first.halt()  # as if the delivery thread were gone (a kill): nothing delivered
    for i in range(50):
        first.put(1, {"i": i})
    assert len(first.spool) == 50 and not path.exists()
    second = outlet(JsonlFile, {"path": str(path)}, tmp_path)
    second.put(1, {"i": 50})
    wait_until(lambda: second.delivered == 51)
    second.close()
    seqs = [json.loads(line)["seq"] for line in path.read_text().splitlines()]
    assert seqs[:50] == list(range(50)) and seqs[50] >= 50


def test_redis_stream_sink_xadds_every_message_across_a_redis_restart(tmp_path):
    from megflow_mp.sinks.redis_stream import RedisStream
    from tests.support.redis import RedisServer

    (tmp_path / "redis").mkdir()
    server = RedisServer(data_dir=tmp_path / "redis")
    o = outlet(RedisStream, {"url": server.url, "key": "ev:{stream}", "batch": 50}, tmp_path,
               retry_min=0.01, retry_max=0.1, timeout=1.0)
    for e in envs(100):
        o.put(e.from_addr, e.msg)
    wait_until(lambda: o.delivered == 300)
    port = server.port
    server.stop()
    for e in envs(100)[:150]:
        o.put(e.from_addr, e.msg)
    wait_until(lambda: o.retries >= 2)
    server = RedisServer(port=port, data_dir=tmp_path / "redis")
    try:
        wait_until(lambda: o.delivered == 450)
        o.close()
        r = server.client()
        for s in (0, 1, 2):
            entries = r.xrange(f"ev:{s}")
            firsts = list(dict.fromkeys(json.loads(f["data"])["seq"] for _, f in entries))
            assert firsts == list(range(150)) and all(f["id"].startswith(f"n/{s}/") for _, f in entries)
    finally:
        server.stop()


def test_mqtt_sink_publishes_with_puback_and_a_password_from_a_file_across_a_broker_restart(tmp_path):
    from megflow_mp.sinks.mqtt import Mqtt
    from tests.support.mosquitto import Mosquitto

    (tmp_path / "pw").write_text("s3cret-pw\n")
    with Mosquitto(username="cam", password="s3cret-pw") as broker:
        sub = broker.subscribe("cams/#")
        o = outlet(Mqtt, {"port": broker.port, "topic": "cams/{node}/{stream}", "username": "cam",
                          "password": f"file:{tmp_path / 'pw'}", "batch": 20}, tmp_path,
                   retry_min=0.01, retry_max=0.2, timeout=2.0)
        for e in envs(100):
            o.put(e.from_addr, e.msg)
        wait_until(lambda: o.delivered == 300)
        broker.stop()
        for e in envs(50):
            o.put(e.from_addr, e.msg)
        wait_until(lambda: o.retries >= 1)
        broker.start()
        wait_until(lambda: o.delivered == 450, timeout=20)
        o.close()
        wait_until(lambda: len({json.loads(p)["id"] for p in sub.payloads()}) == 450, timeout=10)
        topics = {t for t, _ in sub.got}
        assert topics == {"cams/n/0", "cams/n/1", "cams/n/2"}
        check_in_order([json.loads(p) for p in sub.payloads()], (0, 1, 2), 150)


@pytest.mark.parametrize("config, sink_name, before", [
    ("configs/electric_bicycle/video_test.toml", "alert_sink", "redis_proxy"),
    ("configs/cat_finder/video_test.toml", "notify_sink", "redis_proxy"),
])
def test_example_apps_send_their_alerts_to_a_sink_chosen_by_a_template_variable(config, sink_name, before):
    from megflow_mp.config.loader import load_config

    sink = {"ty": "WebhookSink", "url": "http://127.0.0.1:9000/alerts", "batch": 10,
            "headers": {"Authorization": "env:HOOK_TOKEN"}}
    base = {"videos": ["/v.mp4"], "urls": ["/v.mp4"]}
    with_sink = load_config(config, variables={**base, "sink": sink})
    node = next(n for n in with_sink.nodes if n.name == sink_name)
    args = node.model_dump() if hasattr(node, "model_dump") else dict(node)
    dumped = json.dumps(args, default=str)
    assert "WebhookSink" in dumped and "env:HOOK_TOKEN" in dumped and "9000/alerts" in dumped
    sub = next(g for g in with_sink.graphs if g.name == "subgraph")
    assert f"{sink_name}:out" in json.dumps([o.model_dump() for o in sub.outputs], default=str)
    assert [f"{before}:out", f"{sink_name}:inp"] in [list(c.ports) for c in sub.connections]
    plain = load_config(config, variables=base)
    assert all(n.name != sink_name for n in plain.nodes)


def test_messages_left_in_a_spool_of_one_file_each_are_delivered_first_in_their_order(tmp_path):
    from megflow_mp.sinks.contract import encode

    old = Spool(tmp_path / "spool", fsync=False)  # the spool's format before the segment log
    for i in range(3):
        old.append(encode(make_record("n", 1, i, {"i": i})))
    path = tmp_path / "f.jsonl"
    o = outlet(JsonlFile, {"path": str(path)}, tmp_path)
    o.put(1, {"i": 3})
    wait_until(lambda: o.delivered == 4)
    o.close()
    assert [json.loads(line)["message"]["i"] for line in path.read_text().splitlines()] == [0, 1, 2, 3]
    assert not list((tmp_path / "spool").glob("*.entry")) and pending(tmp_path / "spool") == 0
