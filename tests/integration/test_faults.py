"""Faults that must stay local: a node raising on one stream or one request ends that stream or
answers that request with an error; every other stream and request goes on, and the app with them."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import cv2
import numpy as np
import pytest
import requests

from tests.integration.conftest import drain, free_port, run_cli, start_server, write_app
from tests.support.fixtures import clip_dir  # noqa: F401

from megflow_mp.supervisor import children_of
from tests.support.procfs import proc_name

STREAMS_TOML = """
main = "video"
[[nodes]]                    # shared by every stream
name = "shared"
ty = "Step"
fail_on = 3
[[graphs]]
name = "subgraph"
inputs = [{ name = "inp", cap = 8, ports = ["entry:inp"] }]
outputs = [{ name = "out", cap = 8, ports = ["exit:out"] }]
connections = [
  { cap = 8, ports = ["entry:out", "shared:inp"] },
  { cap = 8, ports = ["shared:out", "middle:inp"] },
  { cap = 8, ports = ["middle:out", "exit:inp"] },
]
    [[graphs.nodes]]
    name = "entry"
    ty = "Step"
    fail_on = 0
    [[graphs.nodes]]
    name = "middle"
    ty = "Step"
    fail_on = 1
    [[graphs.nodes]]
    name = "exit"
    ty = "Step"
    fail_on = 2
    last = true
[[graphs]]
name = "video"
connections = [
  { cap = 8, ports = ["source:out", "destination:inp"] },
  { cap = 8, ports = ["source:inp", "destination:out"] },
]
    [[graphs.nodes]]
    name = "source"
    ty = "VideoServer"
    port = {port}
    allow_dirs = ["{clips}"]
    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""

STEP = """
import json
from megflow import register

@register(inputs=["inp"], outputs=["out"])
class Step:
    \"\"\"Passes frames on; raises on the 5th frame of stream ``fail_on``.\"\"\"
    def __init__(self, name, args):
        self.name, self.fail_on, self.last = name, args["fail_on"], args.get("last", False)
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        if e.from_addr == self.fail_on and e.partial_id == 4:
            raise ValueError(f"{self.name} cannot take frame 4 of stream {e.from_addr}")
        if self.last:
            e = e.repack(json.dumps({"stream": e.from_addr, "frame": e.partial_id}))
        self.out.send(e)
"""


def stream_info(url: str, sid: int) -> dict:
    return next(s for s in requests.get(f"{url}/list", timeout=10).json() if s["id"] == sid)


def wait_ended(url: str, sid: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = stream_info(url, sid)
        if info["state"] not in ("starting", "running", "reconnecting"):
            return info
        time.sleep(0.05)
    raise AssertionError(f"stream {sid} did not end: {info}")


def test_a_node_raising_in_any_position_ends_only_its_stream(tmp_path, clip_dir):  # noqa: F811
    toml = STREAMS_TOML.replace("{port}", str(free_port())).replace("{clips}", str(clip_dir))
    proc, url = start_server(write_app(tmp_path, "faults", {"faults.toml": toml, "nodes.py": STEP}))
    try:
        quoted = requests.utils.quote(str(clip_dir / "cat.mp4"), safe="")
        ids = [int(requests.post(f"{url}/start/{quoted}", timeout=30).text.rsplit(" ", 1)[1]) for _ in range(6)]
        assert ids == list(range(6))
        got = {sid: [] for sid in ids}
        infos = {}
        for sid in ids:
            infos[sid] = wait_ended(url, sid)
            got[sid] += [json.loads(m)["frame"] for m in requests.get(f"{url}/get_msgs/{sid}", timeout=10).json()]
        assert proc.poll() is None, proc.stderr.read()
        for sid, node in enumerate(["entry", "middle", "exit", "shared"]):
            info = infos[sid]
            assert info["state"] == "error", info
            expected = rf"node '([^']*/)?{node}' failed: ValueError: {node} cannot take frame 4 of stream {sid}"
            assert re.fullmatch(expected, info["reason"]), info
            assert got[sid] == list(range(4)), (sid, got[sid])  # what passed before the failure
        for sid in (4, 5):  # the others went on to their end, every frame, in order
            assert infos[sid]["state"] == "finished" and infos[sid]["reason"] is None, infos[sid]
            assert got[sid] == list(range(50)), (sid, got[sid])
        # the app still takes new streams, through the same shared node
        sid = int(requests.post(f"{url}/start/{quoted}", timeout=30).text.rsplit(" ", 1)[1])
        assert wait_ended(url, sid)["state"] == "finished"
        assert len(requests.get(f"{url}/get_msgs/{sid}", timeout=10).json()) == 50
    finally:
        drain(proc)


SERVER_TOML = """
main = "serve"
[[graphs]]
name = "serve"
connections = [
  { cap = 16, ports = ["source:out", "work:inp"] },
  { cap = 16, ports = ["work:out", "source:inp"] },
]
    [[graphs.nodes]]
    name = "source"
    ty = "{server}"
    port = {port}
    {extra}
    [[graphs.nodes]]
    name = "work"
    ty = "Picky"
"""

PICKY = """
from megflow import register

@register(inputs=["inp"], outputs=["out"])
class Picky:
    \"\"\"Reverses the bytes (or flips the image); raises on a request named 'boom'.\"\"\"
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        if e.msg["extra_data"] == "boom":
            raise ValueError("cannot take this one")
        self.out.send(e.repack({"data": e.msg["data"][::-1].copy()}))
"""


def start_service(tmp_path, server: str, extra: str = ""):
    toml = SERVER_TOML.replace("{server}", server).replace("{port}", str(free_port())).replace("{extra}", extra)
    app = write_app(tmp_path, f"svc_{server.lower()}", {f"svc_{server.lower()}.toml": toml, "nodes.py": PICKY})
    return start_server(app)


@pytest.mark.parametrize("server", ["ImageServer", "BytesServer"])
def test_a_node_raising_on_one_request_answers_it_500_and_the_service_goes_on(tmp_path, server):
    proc, url = start_service(tmp_path, server)
    body = cv2.imencode(".png", np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3))[1].tobytes()
    try:
        for _ in range(3):
            r = requests.post(f"{url}/analyze/boom", data=body, headers={"Content-Type": "image/*"}, timeout=30)
            assert r.status_code == 500, r.text
            assert re.fullmatch(r"node '([^']*/)?work' failed: ValueError: cannot take this one", r.json()["detail"])
            r = requests.post(f"{url}/analyze/fine", data=body, headers={"Content-Type": "image/*"}, timeout=30)
            assert r.status_code == 200, r.text
            if server == "BytesServer":
                assert r.content == body[::-1]
            else:
                sent = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
                got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
                assert got.shape == sent.shape and np.abs(got.astype(int) - sent[::-1].astype(int)).mean() < 8
        assert proc.poll() is None
    finally:
        drain(proc)


def test_on_error_exit_ends_the_app_at_the_first_failure(tmp_path):
    proc, url = start_service(tmp_path, "BytesServer", 'on_error = "exit"')
    try:
        assert requests.post(f"{url}/analyze/fine", data=b"abc", timeout=30).content == b"cba"
        try:
            requests.post(f"{url}/analyze/boom", data=b"abc", timeout=30)
        except requests.ConnectionError:
            pass  # the app may be gone before it answers
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "node 'serve/work'" in err and "ValueError: cannot take this one" in err


def test_on_error_must_be_reply_or_exit(tmp_path):
    toml = SERVER_TOML.replace("{server}", "ImageServer").replace("{port}", str(free_port()))
    toml = toml.replace("{extra}", 'on_error = "ignore"')
    app = write_app(tmp_path, "bad", {"bad.toml": toml, "nodes.py": PICKY})
    r = run_cli("run", "-p", app, timeout=60)
    assert r.returncode == 1 and "on_error: expected 'reply' or 'exit', got 'ignore'" in r.stderr, r.stderr


SLOW = PICKY.replace('''        if e.msg["extra_data"] == "boom":''', '''        if e.msg["extra_data"] == "slow":
            import time
            time.sleep(60)
        if e.msg["extra_data"] == "boom":''')


def test_requests_waiting_when_the_app_fails_are_answered_503(tmp_path):
    """A worker dies without restart (``restart = 0``: an app with a front door would start it again
    by default), so the app ends: the requests the front door holds are answered 503 (the front
    door's own worker is alive and says so), not dropped with the connection."""
    toml = SERVER_TOML.replace("{server}", "BytesServer").replace("{port}", str(free_port())).replace("{extra}", "")
    toml = toml.replace('ty = "Picky"', 'ty = "Picky"\n    restart = 0')
    app = write_app(tmp_path, "svc_slow", {"svc_slow.toml": toml, "nodes.py": SLOW})
    proc, url = start_server(app)
    answers = []

    def ask():
        try:
            r = requests.post(f"{url}/analyze/slow", data=b"abc", timeout=60)
            answers.append((r.status_code, r.json()["detail"], r.headers.get("Retry-After")))
        except requests.ConnectionError as exc:
            answers.append(("closed", str(exc), None))

    clients = [threading.Thread(target=ask) for _ in range(3)]
    try:
        for t in clients:
            t.start()
        work = None
        deadline = time.monotonic() + 30
        while work is None and time.monotonic() < deadline:
            for pid in children_of(proc.pid):
                if proc_name(pid) == "mf:work":
                    work = pid
            time.sleep(0.05)
        assert work is not None
        time.sleep(1.0)  # the three requests are in the graph: one in the node, two queued
        os.kill(work, signal.SIGKILL)
        for t in clients:
            t.join(60)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert len(answers) == 3
    for status, detail, retry in answers:
        assert status == 503 and detail.startswith("the app is stopping") and retry == "1", (status, detail)
