"""ImageServer and BytesServer through a real uvicorn server on a free port, with the seeds'
client styles (curl-like raw body, multipart), concurrency and bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import requests

from megflow_mp.supervisor import children_of
from tests.integration.conftest import start_cli, write_app
from tests.support.clips import data_dir
from tests.support.procfs import proc_name

DATA = data_dir()

SERVER_TOML = """
main = "serve"
[[graphs]]
name = "subgraph"
inputs = [{ name = "inp", cap = 16, ports = ["work:inp"] }]
outputs = [{ name = "out", cap = 16, ports = ["work:out"] }]
    [[graphs.nodes]]
    name = "work"
    ty = "{work}"
[[graphs]]
name = "serve"
connections = [
  { cap = 16, ports = ["source:out", "destination:inp"] },
  { cap = 16, ports = ["source:inp", "destination:out"] },
]
    [[graphs.nodes]]
    name = "source"
    ty = "{server}"
    port = {port}
    timeout = 3
    max_body = 4000000
    {extra}
    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""

NODES = """
import json, time
from megflow import register

@register(inputs=["inp"], outputs=["out"])
class Flip:  # image mode: the picture upside down
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        e.msg["data"] = e.msg["data"][::-1].copy()
        self.out.send(e)

@register(inputs=["inp"], outputs=["out"])
class Describe:  # json mode: what the graph saw, as a JSON string
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        img = e.msg["data"]
        if e.msg["extra_data"] == "slow":
            time.sleep(5)
        text = json.dumps({"extra": e.msg["extra_data"], "shape": list(img.shape), "sum": int(img.sum())})
        self.out.send(e.repack(text))

@register(inputs=["inp"], outputs=["out"])
class Reverse:  # bytes mode
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        self.out.send(e.repack({"data": e.msg["data"][::-1].tobytes()}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve(tmp_path):
    """Start an app with one server node; yield its base URL; drain it with SIGINT at the end."""
    procs = []

    def start(server: str, work: str, extra: str = ""):
        port = free_port()
        toml = (SERVER_TOML.replace("{work}", work).replace("{server}", server)
                .replace("{port}", str(port)).replace("{extra}", extra))
        app = write_app(tmp_path, f"app{len(procs)}", {f"app{len(procs)}.toml": toml, "nodes.py": NODES})
        proc = start_cli("run", "-p", app)
        procs.append(proc)
        for line in iter(proc.stderr.readline, ""):
            if "listening on" in line:
                return f"http://127.0.0.1:{port}"
        raise AssertionError("server did not start: " + proc.communicate()[1])

    start.procs = procs  # the apps started, in order
    yield start
    for proc in procs:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err


def photo(name: str) -> bytes:
    return (DATA / "images" / name).read_bytes()


def test_the_front_door_keeps_the_normal_scheduling_policy_and_the_graph_runs_as_batch(serve):
    serve("ImageServer", "Flip")
    workers = {proc_name(pid): pid for pid in children_of(serve.procs[-1].pid)}
    assert set(workers) == {"mf:source", "mf:work"}
    assert os.sched_getscheduler(workers["mf:source"]) == os.SCHED_OTHER  # it answers clients
    assert os.sched_getscheduler(workers["mf:work"]) == os.SCHED_BATCH


def test_image_mode_round_trip_with_a_raw_body_as_curl_sends_it(serve):
    url = serve("ImageServer", "Flip")
    r = requests.post(f"{url}/analyze/my_cat", data=photo("cat_720p.jpg"), headers={"Content-Type": "image/*"},
                      timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    sent = cv2.imdecode(np.frombuffer(photo("cat_720p.jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert got.shape == sent.shape
    assert np.abs(got.astype(int) - sent[::-1].astype(int)).mean() < 3  # flipped, JPEG-close


def test_json_mode_multipart_upload_and_32_concurrent_requests(serve):
    url = serve("ImageServer", "Describe", 'response = "json"')
    r = requests.post(f"{url}/analyze/form", files={"file": ("parrot.jpg", photo("parrot.jpg"), "image/jpeg")},
                      timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["extra"] == "form"
    names = sorted(p.name for p in (DATA / "coco").iterdir())[:32]

    def ask(name):
        body = (DATA / "coco" / name).read_bytes()
        img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        reply = requests.post(f"{url}/analyze/{name}", data=body, headers={"Content-Type": "image/*"}, timeout=60)
        return name, img, reply

    with ThreadPoolExecutor(32) as pool:
        for name, img, reply in pool.map(ask, names):
            assert reply.status_code == 200, reply.text
            answer = json.loads(reply.text)
            assert answer == {"extra": name, "shape": list(img.shape), "sum": int(img.sum())}


def test_bad_inputs_get_clear_4xx_and_the_server_goes_on(serve):
    url = serve("ImageServer", "Describe", 'response = "json"')
    r = requests.post(f"{url}/analyze/x", data=b"this is not an image", timeout=30)
    assert r.status_code == 400 and "not a decodable image" in r.json()["detail"]
    r = requests.post(f"{url}/analyze/x", data=b"", timeout=30)
    assert r.status_code == 400 and "empty body" in r.json()["detail"]
    r = requests.post(f"{url}/analyze/x", data=b"\xff" * 5_000_000, timeout=30)
    assert r.status_code == 413
    r = requests.post(f"{url}/analyze/x", files={"other": ("a.txt", b"hi")}, data={"k": "v"}, timeout=30)
    assert r.status_code == 400
    r = requests.post(f"{url}/analyze/slow", data=photo("owl.jpg"), timeout=30)
    assert r.status_code == 504 and "no result" in r.json()["detail"]
    r = requests.post(f"{url}/analyze/after", data=photo("owl.jpg"), timeout=30)
    assert r.status_code == 200 and r.json()["extra"] == "after"


def test_bytes_server_round_trip(serve):
    url = serve("BytesServer", "Reverse")
    payload = bytes(range(256)) * 1000
    r = requests.post(f"{url}/analyze/bytes", data=payload, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert r.content == payload[::-1]


def test_swagger_and_openapi_describe_the_endpoint(serve):
    url = serve("ImageServer", "Flip")
    spec = requests.get(f"{url}/openapi.json", timeout=30).json()
    op = spec["paths"]["/analyze/{extra_data}"]["post"]
    assert set(op["requestBody"]["content"]) == {"image/*", "multipart/form-data"}
    assert {"200", "400", "413", "504"} <= set(op["responses"])
    assert "image/jpeg" in op["responses"]["200"]["content"]
    docs = requests.get(f"{url}/docs", timeout=30)
    assert docs.status_code == 200 and "swagger-ui" in docs.text


def test_swagger_ui_renders_the_endpoints_in_headless_chromium(serve, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (make test installs it)"
    url = serve("ImageServer", "Flip")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
                          f"{url}/docs"], capture_output=True, text=True, timeout=90).stdout
    assert 'data-path="/analyze/{extra_data}"' in dom  # rendered by Swagger UI's JavaScript, served locally
    assert "Analyze an image" in dom
