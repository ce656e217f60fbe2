"""Streams a VideoServer keeps alive: declared in the config, named, recorded and started again after
the app is SIGKILLed, started again after a node raised on one of their frames; the JSON resource
checked against the server's own OpenAPI document. Real RTSP server, real clips, real processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import jsonschema
import pytest
import requests

from megflow_mp.supervisor import children_of
from tests.integration.conftest import drain, free_port, start_server, write_app
from tests.support.clips import make_clip
from tests.support.fixtures import clip_dir, rtsp_packages, rtsp_server, rtsp_server_factory  # noqa: F401

APP = """
main = "video"
[[nodes]]                        # shared by every stream
name = "det"
ty = "Mark"
[[graphs]]
name = "subgraph"
inputs = [{ name = "inp", cap = 16, ports = ["boom:inp"] }]
outputs = [{ name = "out", cap = 16, ports = ["det:out"] }]
connections = [ { cap = 16, ports = ["boom:out", "det:inp"] } ]
    [[graphs.nodes]]
    name = "boom"
    ty = "Boom"
[[graphs]]
name = "video"
connections = [
  { cap = 16, ports = ["server:out", "destination:inp"] },
  { cap = 16, ports = ["server:inp", "destination:out"] },
]
    [[graphs.nodes]]
    name = "server"
    ty = "VideoServer"
    {args}
    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""

NODES = """
import json
import os
from megflow import register

MARKS = os.path.join(os.path.dirname(__file__), "marks")

@register(inputs=["inp"], outputs=["out"])
class Boom:  # raises on frame 20 of a stream whose name starts with "bad" (once: a mark file says it did),
    def __init__(self, name, args): pass  # and on every frame 5 of a stream whose name starts with "doomed"
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        sid = str(e.from_addr)
        if sid.startswith("doomed") and e.partial_id == 5:
            raise RuntimeError(f"frame 5 of {sid} is cursed")
        mark = os.path.join(MARKS, sid)
        if sid.startswith("bad") and e.partial_id == 20 and not os.path.exists(mark):
            os.makedirs(MARKS, exist_ok=True)
            open(mark, "w").close()
            raise ValueError(f"frame 20 of {sid} is bad")
        self.out.send(e)

@register(inputs=["inp"], outputs=["out"])
class Mark:
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        self.out.send(e.repack(json.dumps({"stream": e.from_addr, "frame": e.partial_id})))
"""


def kept_app(tmp_path: Path, port: int, **args) -> Path:
    lines = [f"port = {port}", f'state_dir = "{tmp_path / "state"}"', "backoff_initial = 0.2", "backoff_max = 1.0"]
    lines += [f"{k} = {v}" for k, v in args.items()]
    return write_app(tmp_path, "kept", {"kept.toml": APP.replace("{args}", "\n    ".join(lines)), "nodes.py": NODES})


def stream(url: str, sid) -> dict:
    r = requests.get(f"{url}/streams/{sid}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(check, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def running_with_frames(url: str, sid, more_than: int = 0):
    def check():
        r = requests.get(f"{url}/streams/{sid}", timeout=10)  # 404 while the server starts it
        s = r.json() if r.status_code == 200 else {}
        return s if s.get("state") == "running" and s["frames"] > more_than else None
    return check


def toml_list(streams: list[dict]) -> str:
    return "[" + ", ".join("{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in s.items()) + " }"
                           for s in streams) + "]"


def test_declared_and_named_streams_and_the_json_resource_against_openapi(tmp_path, rtsp_server, clip_dir):  # noqa: F811
    clip = make_clip(tmp_path / "clips" / "long.mp4", frames=200, size=(320, 180))
    declared = [{"id": "gate", "url": rtsp_server.url}, {"id": "yard", "url": str(clip), "realtime": True}]
    app = kept_app(tmp_path, free_port(), allow_dirs=json.dumps([str(tmp_path / "clips")]),
                   streams=toml_list(declared))
    proc, url = start_server(app)
    try:
        spec = requests.get(f"{url}/openapi.json", timeout=10).json()
        schemas = spec["components"]["schemas"]

        def valid(instance, name):
            jsonschema.validate(instance, {**schemas[name], "components": spec["components"]},
                                resolver=jsonschema.RefResolver("", spec))
            return instance

        for path, method in [("/streams", "get"), ("/streams", "post"), ("/streams/{sid}", "get"),
                             ("/streams/{sid}", "delete"), ("/start/{url}", "post")]:
            assert method in spec["paths"][path], (path, method)
        assert spec["paths"]["/streams"]["post"]["requestBody"]["content"]["application/json"]["examples"]
        # declared streams start with the app, under their names
        gate = wait_for(running_with_frames(url, "gate"), what="gate running")
        wait_for(lambda: requests.get(f"{url}/readyz", timeout=10).status_code == 200, what="ready")
        assert gate["declared"] and gate["url"] == rtsp_server.url
        listed = requests.get(f"{url}/list", timeout=10).json()
        assert {s["id"] for s in listed} == {"gate", "yard"}
        for s in listed:
            valid(s, "StreamInfo")
        # a name in use is 409 naming it; MegFlow's /start without id keeps integer ids
        quoted = requests.utils.quote(rtsp_server.url, safe="")
        r = requests.post(f"{url}/start/{quoted}", params={"id": "gate"}, timeout=30)
        assert r.status_code == 409 and "'gate'" in r.json()["detail"]
        r = requests.post(f"{url}/start/{quoted}", timeout=30)
        assert r.text == "start stream whose id is 0"
        r = requests.post(f"{url}/start/{quoted}", params={"id": "cam.2"}, timeout=30)
        assert r.text == "start stream whose id is cam.2"
        for bad in ["12", "a b", "x" * 65]:
            r = requests.post(f"{url}/start/{quoted}", params={"id": bad}, timeout=30)
            assert r.status_code == 400 and "stream id" in r.json()["detail"], bad
        # the JSON resource
        r = requests.post(f"{url}/streams", json={"url": rtsp_server.url, "id": "door",
                                                  "options": {"read_timeout": 7, "on_error": "end"}}, timeout=30)
        assert r.status_code == 201, r.text
        assert valid(r.json(), "StreamInfo")["id"] == "door"
        assert requests.post(f"{url}/streams", json={"url": rtsp_server.url, "id": "door"}, timeout=30).status_code == 409
        r = requests.post(f"{url}/streams", json={"url": rtsp_server.url, "options": {"read_timout": 7}}, timeout=30)
        assert r.status_code == 422 and "read_timout" in r.text
        r = requests.post(f"{url}/streams", json={"uri": "rtsp://admin:Pa55word@h/x", "id": "x"}, timeout=30)
        assert r.status_code == 422 and "url" in r.text and "Pa55word" not in r.text  # the input is not echoed
        r = requests.post(f"{url}/streams", json={"url": "ftp://h/x"}, timeout=30)
        assert r.status_code == 400 and "only rtsp" in r.json()["detail"]
        numbered = requests.post(f"{url}/streams", json={"url": rtsp_server.url}, timeout=30).json()
        assert numbered["id"] == 1
        for sid in ["door", "cam.2", 0, 1]:
            valid(wait_for(running_with_frames(url, sid), what=f"{sid} running"), "StreamInfo")
        every = requests.get(f"{url}/streams", timeout=10).json()
        assert [s["id"] for s in every] == [0, 1, "cam.2", "door", "gate", "yard"]
        for s in every:
            valid(s, "StreamInfo")
        # every route that takes an id takes a name
        msgs = wait_for(lambda: requests.get(f"{url}/get_msgs/gate", timeout=10).json(), what="messages of gate")
        assert json.loads(msgs[0])["stream"] == "gate"
        assert requests.get(f"{url}/view/gate", timeout=10).status_code == 200
        assert requests.get(f"{url}/view/gate/stats", timeout=10).status_code == 200
        # latency of results, in the JSON and in the metrics
        lat = wait_for(lambda: (s := stream(url, "gate"))["latency_p95_ms"] is not None and s, what="latency")
        assert 0 < lat["latency_p50_ms"] <= lat["latency_p95_ms"] < 5000
        def latency_series():
            text = requests.get(f"{url}/metrics", timeout=10).text
            return [line for line in text.splitlines()
                    if line.startswith("megflow_stream_latency_seconds_count") and 'stream="gate"' in line]
        count = wait_for(latency_series, what="the latency histogram")
        assert float(count[0].rsplit(" ", 1)[1]) > 0
        # DELETE stops and forgets; then 404
        assert requests.delete(f"{url}/streams/door", timeout=10).status_code == 204
        wait_for(lambda: stream(url, "door")["state"] == "stopped", what="door stopped")
        assert requests.delete(f"{url}/streams/nothing", timeout=10).status_code == 404
        assert requests.get(f"{url}/streams/nothing", timeout=10).status_code == 404
        assert requests.post(f"{url}/stop/cam.2", timeout=10).text == "stop stream cam.2 success"
        # the name of a stopped stream may be used again
        assert requests.post(f"{url}/streams", json={"url": rtsp_server.url, "id": "door"}, timeout=30).status_code == 201
        recorded = json.loads((tmp_path / "state" / "video_server.json").read_text())
        assert sorted(str(r["id"]) for r in recorded["streams"]) == ["0", "1", "door"]  # not declared, not stopped
    finally:
        drain(proc)


def _kill_app(proc) -> None:
    """SIGKILL the supervisor; its workers die with it (PDEATHSIG) and are reaped here (the tests'
    process is their subreaper)."""
    workers = children_of(proc.pid)
    assert workers
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()

    def all_gone():
        for pid in workers:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    return None
            except ChildProcessError:
                pass  # reaped already
        return True
    wait_for(all_gone, what="the workers to die with their supervisor")


@pytest.mark.slow
def test_streams_started_over_http_run_again_under_their_ids_after_a_sigkill(tmp_path, rtsp_server, clip_dir):  # noqa: F811
    port = free_port()
    app = kept_app(tmp_path, port, allow_dirs=json.dumps([str(clip_dir)]))
    proc, url = start_server(app)
    quoted = requests.utils.quote(rtsp_server.url, safe="")
    try:
        assert requests.post(f"{url}/start/{quoted}", params={"id": "gate"}, timeout=30).status_code == 200
        assert requests.post(f"{url}/start/{quoted}", timeout=30).text == "start stream whose id is 0"
        assert requests.post(f"{url}/streams", json={"url": rtsp_server.url, "id": "gone"}, timeout=30).status_code == 201
        for sid in ("gate", 0, "gone"):
            wait_for(running_with_frames(url, sid), what=f"{sid} running")
        assert requests.delete(f"{url}/streams/gone", timeout=10).status_code == 204  # forgotten
    finally:
        _kill_app(proc)
    killed = time.monotonic()
    proc, url = start_server(app)
    try:
        for sid in ("gate", 0):
            wait_for(running_with_frames(url, sid, more_than=5), what=f"{sid} running again")
        recovered = time.monotonic() - killed
        print(f"\nstreams running again {recovered:.2f} s after the SIGKILL (the app's start included)")
        assert requests.get(f"{url}/streams/gone", timeout=10).status_code == 404
        assert requests.post(f"{url}/start/{quoted}", timeout=30).text == "start stream whose id is 1"  # ids go on
        assert requests.post(f"{url}/stop/gate", timeout=10).status_code == 200
    finally:
        drain(proc)
    proc, url = start_server(app)  # a planned restart: what was stopped stays stopped
    try:
        for sid in (0, 1):
            wait_for(running_with_frames(url, sid), what=f"{sid} running after a planned restart")
        assert requests.get(f"{url}/streams/gate", timeout=10).status_code == 404
    finally:
        drain(proc)


def test_a_corrupt_state_file_is_a_warning_and_the_app_serves(tmp_path, rtsp_server):  # noqa: F811
    state = tmp_path / "state"
    state.mkdir()
    (state / "video_server.json").write_text('{"format": "megflow-mp video streams", "streams": [tru')
    proc, url = start_server(kept_app(tmp_path, free_port()))
    try:
        r = requests.post(f"{url}/streams", json={"url": rtsp_server.url, "id": "gate"}, timeout=30)
        assert r.status_code == 201
        wait_for(running_with_frames(url, "gate"), what="gate running")
    finally:
        drain(proc)  # its warning came before the server listened (the unit tests read its words)
    assert [p for p in state.iterdir() if ".bad-" in p.name]
    assert [r["id"] for r in json.loads((state / "video_server.json").read_text())["streams"]] == ["gate"]


@pytest.mark.slow
def test_a_node_raising_restarts_that_stream_only_and_a_bounded_number_of_times(tmp_path, rtsp_server, clip_dir):  # noqa: F811
    clip = make_clip(tmp_path / "clips" / "file.mp4", frames=60, size=(320, 180))
    app = kept_app(tmp_path, free_port(), allow_dirs=json.dumps([str(tmp_path / "clips")]), max_restarts=2,
                   streams=toml_list([{"id": "good", "url": rtsp_server.url}, {"id": "bad", "url": rtsp_server.url},
                                      {"id": "doomed", "url": rtsp_server.url}]))
    proc, url = start_server(app)
    try:
        good = wait_for(running_with_frames(url, "good"), what="good running")
        # a file stream keeps MegFlow's behaviour: a node raising ends it in error
        r = requests.post(f"{url}/streams", json={"url": str(clip), "id": "bad-file"}, timeout=30)
        assert r.status_code == 201
        ended = wait_for(lambda: (s := stream(url, "bad-file"))["state"] == "error" and s, what="the file's end")
        assert "frame 20 of bad-file is bad" in ended["reason"] and ended["restarts"] == 0
        # the live stream is started again once, and runs on
        bad = wait_for(lambda: (s := stream(url, "bad"))["restarts"] == 1 and s["state"] == "running" and s["frames"] > 10
                       and s, what="bad restarted and running")
        assert "frame 20 of bad is bad" in bad["last_error"]
        # the one that always fails is started again max_restarts times, then left in error
        doomed = wait_for(lambda: (s := stream(url, "doomed"))["state"] == "error" and s, what="doomed given up")
        assert doomed["restarts"] == 2 and "not started again: 2 restarts in 60 s used up" in doomed["reason"]
        assert "frame 5 of doomed is cursed" in doomed["reason"]
        # the healthy stream never stopped
        now = stream(url, "good")
        assert now["state"] == "running" and now["restarts"] == 0 and now["frames"] > good["frames"]
        assert now["reconnects"] == 0
    finally:
        _, err = drain(proc)
    assert "stream bad (" in err and "starting it again in" in err
    recorded = json.loads((tmp_path / "state" / "video_server.json").read_text())["streams"]
    assert [r["id"] for r in recorded] == ["bad-file"]  # declared ones are not recorded; a failed one stays
