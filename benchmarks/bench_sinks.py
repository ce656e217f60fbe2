"""Messages/s through each sink to a local destination, against its plain client library called in a
loop with the same messages and the same batch size; and the spool's cost when the destination is down.

* engine: an outlet (the machinery behind every sink node: seq, spool on disk, the delivery thread,
  removal once accepted) fed ``N`` messages of ``{"i": i, "label": "cat"}`` over 4 streams; timed
  from the first put to the destination accepting the last one.
* plain: the same records (the same JSON) sent by the client library in a loop: requests.Session.post
  (one message per POST, as WebhookSink's default batch), paho publish QoS 1 + wait for the PUBACKs of
  each 100, a redis pipeline of 100 XADDs, 100 lines per write + fsync.
* sink_spool: puts/s into a sink whose destination is down (engine: everything goes to the spool)
  against puts/s with the destination up (plain).
"""

import json
import time

import pytest

from harness import interleaved, record, scaled

from megflow_mp.sinks.config import Args, common_args
from megflow_mp.sinks.contract import encode, make_record
from megflow_mp.sinks.jsonl import JsonlFile
from megflow_mp.sinks.mqtt import Mqtt
from megflow_mp.sinks.outlet import Outlet
from megflow_mp.sinks.redis_stream import RedisStream
from megflow_mp.sinks.webhook import Webhook

N = {"webhook": scaled(3000, 20), "mqtt": scaled(20000, 100), "redis": scaled(50000, 100),
     "jsonl": scaled(50000, 100), "spool": scaled(20000, 100)}
STREAMS = 4


def messages(n):
    return [(i % STREAMS, {"i": i, "label": "cat"}) for i in range(n)]


def run_sink(cls, args, tmp, n, batch, down=False):
    a = Args(cls.kind, "bench", {**args, "batch": batch, "retry_min": 0.5, "retry_max": 1.0, "drain_timeout": 0})
    common = common_args(a, batch)
    outlet = Outlet(cls.kind, "bench", "bench", cls(a, common, "bench"), common, tmp / f"spool-{time.monotonic_ns()}")
    msgs = messages(n)
    t0 = time.perf_counter()
    for stream, msg in msgs:
        outlet.put(stream, msg)
    put = time.perf_counter() - t0
    if not down:
        deadline = time.monotonic() + 300
        while outlet.delivered < n and time.monotonic() < deadline:
            time.sleep(0.001)
        assert outlet.delivered == n
    took = time.perf_counter() - t0
    outlet.close()
    return {"rate": n / (put if down else took), "put_rate": n / put}


def payloads(n):
    seqs = {}
    out = []
    for stream, msg in messages(n):
        seqs[stream] = seqs.get(stream, -1) + 1
        out.append(encode(make_record("bench", stream, seqs[stream], msg)))
    return out


def plain_webhook(url, n):
    import requests

    bodies = [f"[{p}]".encode() for p in payloads(n)]
    s = requests.Session()
    t0 = time.perf_counter()
    for body in bodies:
        r = s.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=5)
        assert r.status_code == 200
    return {"rate": n / (time.perf_counter() - t0)}


def plain_mqtt(port, n):
    import paho.mqtt.client as mqtt

    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"plain-{time.monotonic_ns()}")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    ps = payloads(n)
    t0 = time.perf_counter()
    for k in range(0, n, 100):
        infos = [c.publish(f"bench/{json.loads(p)['stream']}", p, qos=1) for p in ps[k:k + 100]]
        for info in infos:
            info.wait_for_publish(5)
    rate = n / (time.perf_counter() - t0)
    c.disconnect()
    c.loop_stop()
    return {"rate": rate}


def plain_redis(url, n):
    import redis

    r = redis.Redis.from_url(url)
    ps = payloads(n)
    t0 = time.perf_counter()
    for k in range(0, n, 100):
        pipe = r.pipeline(transaction=False)
        for p in ps[k:k + 100]:
            pipe.xadd("plain", {"id": "x", "data": p}, maxlen=100_000, approximate=True)
        pipe.execute()
    return {"rate": n / (time.perf_counter() - t0)}


def plain_jsonl(path, n):
    import os

    ps = payloads(n)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    t0 = time.perf_counter()
    for k in range(0, n, 100):
        os.write(fd, ("\n".join(ps[k:k + 100]) + "\n").encode())
        os.fsync(fd)
    rate = n / (time.perf_counter() - t0)
    os.close(fd)
    return {"rate": rate}


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    from tests.support.mosquitto import Mosquitto
    from tests.support.receiver import Receiver
    from tests.support.redis import RedisServer

    with Receiver() as rx, Mosquitto() as broker, RedisServer() as rs:
        yield {"rx": rx, "broker": broker, "redis": rs, "tmp": tmp_path_factory.mktemp("benchsinks")}


def run(kind, variant, p):
    tmp, n = p["tmp"], N[kind]
    if kind == "webhook":
        return (run_sink(Webhook, {"url": p["rx"].url}, tmp, n, 1) if variant == "engine"
                else plain_webhook(p["rx"].url, n))
    if kind == "mqtt":
        return (run_sink(Mqtt, {"port": p["broker"].port, "topic": "bench/{stream}"}, tmp, n, 100)
                if variant == "engine" else plain_mqtt(p["broker"].port, n))
    if kind == "redis":
        return (run_sink(RedisStream, {"url": p["redis"].url}, tmp, n, 100) if variant == "engine"
                else plain_redis(p["redis"].url, n))
    if kind == "jsonl":
        path = tmp / f"{variant}-{time.monotonic_ns()}.jsonl"
        return run_sink(JsonlFile, {"path": str(path)}, tmp, n, 100) if variant == "engine" else plain_jsonl(path, n)
    # spool: puts/s with the destination down (engine) and up (plain)
    if variant == "engine":
        return run_sink(Webhook, {"url": "http://127.0.0.1:9/down"}, tmp, n, 100, down=True)
    return {"rate": run_sink(JsonlFile, {"path": str(tmp / "up.jsonl")}, tmp, n, 100)["put_rate"]}


@pytest.mark.parametrize("kind", ["webhook", "mqtt", "redis", "jsonl", "spool"])
@pytest.mark.parametrize("variant,round_", interleaved({"engine": 3, "plain": 3}))
def test_sink(benchmark, places, kind, variant, round_):
    benchmark.group = f"sink_{kind}"
    result = benchmark.pedantic(lambda: run(kind, variant, places), rounds=1, iterations=1)
    record(benchmark, variant, "messages/s", result, round_, messages=N[kind])
