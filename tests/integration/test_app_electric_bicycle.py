"""electric_bicycle with the real YOLOX-nano, as ``.onnx`` (onnxruntime) and ``.mge`` (megenginelite), on
clips encoded with PyAV from the shared photos, and a real redis-server.

Clips (lift-sized 480x360 frames, 24 frames, the photo entering from the left): ``moto`` = COCO
000000007816 (a motorbike among people), ``trike`` = COCO 000000007386 cut to its vehicle (seen as a
motorbike; a few frames also give a spurious ``bicycle`` box that must not alert), ``cat`` = cat_720p.
Each vehicle is one motorbike track, so one alert; the cat gives none. The shipped configs are used
as they are; the tests set model, ports, paths and ``interval = 2`` with ``--dynamic``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import av
import pytest
import requests

from tests.integration.conftest import ROOT, drain, free_port, run_cli, start_server
from tests.support.clips import load_image, make_clip, positions
from tests.support.fixtures import redis_server  # noqa: F401
from tests.support.redis import RedisServer

from megflow_mp import Envelope
from megflow_mp.models import Detection
from megflow_mp.plugins import load_registry
from megflow_mp.testing import run_node

PLUGINS = "plugins/electric_bicycle"
VIDEO_CPU = "configs/electric_bicycle/video_cpu.toml"
VIDEO_TEST = "configs/electric_bicycle/video_test.toml"
MODELS = {"onnx": "models/yolox_nano.onnx", "mge": "models/mge/yolox_nano.mge"}
KEY = "electric_bicycle.alerts"
FRAMES, SIZE, INTERVAL = 24, (480, 360), 2
EXPECTED = {"moto": 1, "trike": 1, "cat": 0}  # alerts per clip: one per vehicle track
# megenginelite's first inference in a process may take seconds on a busy machine
FORMATS = [pytest.param("mge", marks=pytest.mark.slow), "onnx"]



@pytest.fixture(autouse=True)
def private_spool(tmp_path, monkeypatch):
    """Writes spooled while redis is down go under the test's own directory (apps inherit it)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("lift")
    trike = load_image("coco/000000007386.jpg")[13:400, 123:600]  # the vehicle's box in the photo
    images = {"moto": "coco/000000007816.jpg", "trike": trike, "cat": "images/cat_720p.jpg"}
    return {name: make_clip(d / f"{name}.mp4", frames=FRAMES, size=SIZE, image=image, motion="enter")
            for name, image in images.items()}


@pytest.fixture(scope="module")
def registry():
    return load_registry(ROOT / PLUGINS)


def write_vars(path: Path, **values) -> Path:
    """A ``--dynamic`` variables file (JSON strings, numbers and lists are valid TOML values)."""
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


def check_alert(alert: dict, stream: int) -> None:
    assert set(alert) == {"stream", "frame", "track", "label", "score", "box"}, alert
    assert alert["stream"] == stream and alert["label"] == "motorbike" and alert["score"] >= 0.3
    assert alert["frame"] % INTERVAL == 0 and 0 < alert["frame"] < FRAMES
    x0, y0, x1, y1 = alert["box"]
    assert 0 <= x0 < x1 <= SIZE[0] and 0 <= y0 < y1 <= SIZE[1]


def decode(path: Path) -> list:
    with av.open(str(path)) as f:
        return [frame.to_ndarray(format="bgr24") for frame in f.decode(video=0)]


# --- nodes in process --------------------------------------------------------------------------------------

def test_enter_motion_starts_outside_and_ends_centred():
    xs = positions(10, (480, 360), (200, 120), "enter")
    assert xs[0] == -200 and xs[-1] == 140 and xs == sorted(xs)


def det(x0: float, label: str = "motorbike", score: float = 0.8, cls: int = 3) -> Detection:
    return Detection(box=(x0, 100.0, x0 + 120.0, 260.0), score=score, cls=cls, label=label)


def test_track_and_alert_alert_once_per_confirmed_vehicle_track(registry):
    person = det(300, "person", 0.9, 0)
    frames = [  # (frame index, detections): a motorbike crosses, leaves, comes back; a bicycle box once
        (0, [person]), (2, [det(0), person]), (4, [det(20), det(200, "bicycle", 0.4, 1), person]),
        (6, [det(40), person]), (8, [det(60)]), (10, []), (12, []), (14, []), (16, [det(200)]), (18, [det(210)]),
        (20, [det(220)]), (22, [det(230)])]
    tracked = run_node("Track", registry=registry, args={"iou": 0.3, "max_missed": 2}, inputs={
        "inp": [{"detections": d} for _, d in frames]}, timeout=10)["out"]
    assert len(tracked) == len(frames)
    # ids are only comparable within one run: the order of first appearance fixes them
    assert [[t.id for t in e.msg["tracks"]] for e in tracked][:3] == [[0], [0, 1], [0, 1, 2]]
    assert [e.msg["ended"] for e in tracked[5:8]] == [[2], [0], [1]]  # bicycle, person, motorbike gone
    assert [t.id for t in tracked[8].msg["tracks"]] == [3]  # the motorbike is back: a new track
    alerts = run_node("Alert", registry=registry, args={"min_hits": 3}, inputs={"inp": tracked}, timeout=10)["out"]
    got = [json.loads(e.msg) for e in alerts]  # the spurious bicycle (one box) and the person never alert
    assert [(a["track"], a["label"]) for a in got] == [(1, "motorbike"), (3, "motorbike")]
    assert got[0]["box"] == [40.0, 100.0, 160.0, 260.0] and got[0]["score"] == 0.8  # its third detection


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_track_alert_in_process_on_real_clips(registry, clips, fmt):
    tracked = {}
    for name in ("moto", "trike"):
        inputs = [Envelope.pack({"data": frame}, {"partial_id": i, "from_addr": 7})
                  for i, frame in enumerate(decode(clips[name]))]
        detected = run_node("Detect", registry=registry, inputs={"inp": inputs}, timeout=60,
                            args={"model": MODELS[fmt], "interval": INTERVAL, "threads": 1})["out"]
        assert [e.partial_id for e in detected] == list(range(0, FRAMES, INTERVAL))
        assert set(detected[-1].msg) == {"detections"}  # the frame is not sent on
        labels = {d.label for e in detected for d in e.msg["detections"]}
        assert {"motorbike", "person"} <= labels if name == "moto" else {"motorbike", "bicycle"} <= labels
        tracked[name] = run_node("Track", registry=registry, inputs={"inp": detected})["out"]
    for name, found in tracked.items():
        alerts = [json.loads(e.msg) for e in run_node("Alert", registry=registry, inputs={"inp": found})["out"]]
        assert len(alerts) == 1, (name, alerts)
        check_alert(alerts[0], stream=7)
    # the trike's few "bicycle" boxes are spurious: each is a track of one box, which alerts only at min_hits 1
    once = run_node("Alert", registry=registry, args={"min_hits": 1}, inputs={"inp": tracked["trike"]})["out"]
    assert {json.loads(e.msg)["label"] for e in once} == {"motorbike", "bicycle"}


def test_nodes_refuse_bad_args_and_messages_with_clear_errors(registry):
    with pytest.raises(ValueError, match="'model'.*required"):
        run_node("Detect", registry=registry, args={})
    with pytest.raises(ValueError, match="interval must be an integer >= 1"):
        run_node("Detect", registry=registry, args={"model": MODELS["onnx"], "interval": 0})
    with pytest.raises(ValueError, match="labels must be a non-empty list"):
        run_node("Alert", registry=registry, args={"labels": "motorbike"})
    with pytest.raises(ValueError, match="Detect -> Track"):
        run_node("Track", registry=registry, inputs={"inp": [{"data": 1}]})
    with pytest.raises(ValueError, match="Track -> Alert"):
        run_node("Alert", registry=registry, inputs={"inp": ["text"]})


def test_redis_list_holds_alerts_while_redis_is_down_and_pushes_them_in_order_when_it_is_back(
        registry, redis_server, caplog, tmp_path):  # noqa: F811
    from electric_bicycle.redis_list import RedisList

    caplog.set_level(logging.INFO, logger="electric_bicycle")
    port, r = redis_server.port, redis_server.client()
    # the retry thread waits 60 s here: the test retries by hand (the app tests see the thread retry)
    alerts = RedisList("t.alerts", port=port, backlog=3, retry_interval=60, spool=tmp_path / "spool")
    assert alerts.check()
    alerts.push("a")
    assert r.lrange("t.alerts", 0, -1) == ["a"]
    redis_server.stop()
    for value in "bcde":  # the backlog holds 3: "b" is dropped
        alerts.push(value)
    assert alerts.down and list(alerts.pending) == ["c", "d", "e"] and alerts.dropped == 1
    assert not alerts.flush()  # still down
    assert sum("is unreachable" in m for m in caplog.messages) == 1  # one line per outage
    with RedisServer(port=port) as back:
        assert alerts.flush() and not alerts.down
        assert back.client().lrange("t.alerts", 0, -1) == ["c", "d", "e"]
        alerts.push("f")  # reachable again: pushed before push() returns
        assert back.client().lrange("t.alerts", 0, -1) == ["c", "d", "e", "f"]
        alerts.close()
    assert any("reachable again: pushed 3 held alert(s)" in m and "1 dropped" in m for m in caplog.messages)


# --- whole apps ---------------------------------------------------------------------------------------------

def start_stream(url: str, path: Path) -> int:
    r = requests.post(f"{url}/start/{requests.utils.quote(str(path), safe='')}", timeout=30)
    assert r.status_code == 200, r.text
    return int(r.text.rsplit(" ", 1)[1])


def wait_finished(url: str, sid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = next(s for s in requests.get(f"{url}/list", timeout=10).json() if s["id"] == sid)
        if info["state"] == "finished":
            assert info["frames"] == FRAMES
            return
        assert info["state"] in ("starting", "running"), info
        time.sleep(0.05)
    raise AssertionError(f"stream {sid} did not finish: {info}")


def take_alerts(url: str, sid: int, count: int, timeout: float = 30) -> list[dict]:
    """The stream's messages once ``count`` have come (a shared node may still hold the last ones when
    the stream's own nodes have ended)."""
    got, deadline = [], time.monotonic() + timeout
    while True:
        got += [json.loads(m) for m in requests.get(f"{url}/get_msgs/{sid}", timeout=10).json()]
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


@pytest.mark.parametrize("fmt", FORMATS)
def test_video_server_alerts_once_per_vehicle_in_messages_and_redis(tmp_path, clips, redis_server, fmt):  # noqa: F811
    dyn = write_vars(tmp_path / "vars.toml", model=MODELS[fmt], port=free_port(), allow_dirs=[str(clips["cat"].parent)],
                     interval=INTERVAL, redis_port=redis_server.port)
    proc, url = start_server(PLUGINS, extra=("-c", VIDEO_CPU, "--dynamic", dyn))
    try:
        ids = {name: start_stream(url, path) for name, path in clips.items()}  # three streams at once
        for sid in ids.values():
            wait_finished(url, sid)
        got = {name: take_alerts(url, sid, EXPECTED[name]) for name, sid in ids.items()}
    finally:
        drain(proc)
    for name, alerts in got.items():
        assert len(alerts) == EXPECTED[name], (name, alerts)
        for alert in alerts:
            check_alert(alert, ids[name])
    pushed = [json.loads(m) for m in redis_server.client().lrange(KEY, 0, -1)]  # complete: the app has ended
    assert sorted(pushed, key=json.dumps) == sorted(got["moto"] + got["trike"], key=json.dumps)


@pytest.mark.parametrize("fmt", FORMATS)
def test_video_test_logs_and_pushes_the_alerts_of_every_url(tmp_path, clips, redis_server, fmt):  # noqa: F811
    urls = [str(clips[name]) for name in ("moto", "cat", "trike")]
    dyn = write_vars(tmp_path / "vars.toml", model=MODELS[fmt], urls=urls, interval=INTERVAL,
                     redis_port=redis_server.port, redis_prefix="lift7.")
    r = run_cli("run", "-c", VIDEO_TEST, "-p", PLUGINS, "--dynamic", dyn, timeout=120)
    assert r.returncode == 0, r.stderr
    logged = [json.loads(line.split(": ", 1)[1]) for line in r.stderr.splitlines() if "INFO stream " in line]
    assert sorted(a["stream"] for a in logged) == [0, 2], r.stderr  # moto and trike, not the cat
    for alert in logged:
        check_alert(alert, alert["stream"])
    pushed = [json.loads(m) for m in redis_server.client().lrange("lift7.alerts", 0, -1)]
    assert sorted(pushed, key=json.dumps) == sorted(logged, key=json.dumps)


def test_alerts_go_on_while_redis_is_down_and_reach_it_when_it_is_back(tmp_path, clips, redis_server):  # noqa: F811
    port = redis_server.port
    dyn = write_vars(tmp_path / "vars.toml", model=MODELS["onnx"], port=free_port(),
                     allow_dirs=[str(clips["cat"].parent)], interval=INTERVAL, redis_port=port)
    proc, url = start_server(PLUGINS, extra=("-c", VIDEO_CPU, "--dynamic", dyn))
    back = None
    try:
        first = start_stream(url, clips["moto"])
        wait_finished(url, first)
        before = take_alerts(url, first, 1)
        assert [json.loads(m) for m in redis_server.client().lrange(KEY, 0, -1)] == before
        redis_server.stop()
        during = start_stream(url, clips["trike"])
        wait_finished(url, during)
        held = take_alerts(url, during, 1)  # redis is down: the alert still reaches the stream's messages
        assert len(held) == 1 and held[0]["stream"] == during
        back = RedisServer(port=port)  # redis is back (empty) on the same port
        deadline = time.monotonic() + 15
        while not back.client().llen(KEY) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [json.loads(m) for m in back.client().lrange(KEY, 0, -1)] == held
        after = start_stream(url, clips["moto"])
        wait_finished(url, after)
        again = take_alerts(url, after, 1)
        assert [json.loads(m) for m in back.client().lrange(KEY, 0, -1)] == held + again
    finally:
        _, err = drain(proc)
        if back is not None:
            back.stop()
    assert f"redis 127.0.0.1:{port} db 0 is unreachable (ConnectionError" in err, err
    assert "alerts still go to the stream messages" in err
    assert "is reachable again: pushed 1 held alert(s)" in err
