"""What the servers refuse by default and under load: the address they listen on, local files,
bodies and headers over their limits, and more requests than ``max_pending``."""

from __future__ import annotations

import socket
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import cv2
import numpy as np
import pytest
import requests

from tests.integration.conftest import drain, free_port, start_server, write_app

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
    ty = "{work}"
    {work_args}
"""

VIDEO_TOML = """
main = "video"
[[graphs]]
name = "subgraph"
inputs = [{ name = "inp", cap = 4, ports = ["work:inp"] }]
outputs = [{ name = "out", cap = 4, ports = ["work:out"] }]
    [[graphs.nodes]]
    name = "work"
    ty = "Reverse"
[[graphs]]
name = "video"
connections = [
  { cap = 4, ports = ["source:out", "destination:inp"] },
  { cap = 4, ports = ["source:inp", "destination:out"] },
]
    [[graphs.nodes]]
    name = "source"
    ty = "VideoServer"
    port = {port}
    {extra}
    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""

NODES = """
import os, time
from megflow import register

@register(inputs=["inp"], outputs=["out"])
class Reverse:
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        self.out.send(e.repack({"data": e.msg["data"][::-1].copy()}))

@register(inputs=["inp"], outputs=["out"])
class Gated:
    \"\"\"Reverse, once the file ``gate`` exists: holds every request until the test opens it.\"\"\"
    def __init__(self, name, args):
        self.gate = args["gate"]
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        while not os.path.exists(self.gate):
            time.sleep(0.01)
        self.out.send(e.repack({"data": e.msg["data"][::-1].copy()}))
"""


def serve(tmp_path, server: str, extra: str = "", work: str = "Reverse", work_args: str = ""):
    port = free_port()
    if server == "VideoServer":
        toml = VIDEO_TOML.replace("{port}", str(port)).replace("{extra}", extra)
    else:
        toml = SERVER_TOML.replace("{server}", server).replace("{work}", work).replace("{port}", str(port))
        toml = toml.replace("{work_args}", work_args)
        toml = toml.replace("{extra}", extra)
    name = f"app_{server.lower()}_{len(list(tmp_path.iterdir()))}"
    proc, url = start_server(write_app(tmp_path, name, {f"{name}.toml": toml, "nodes.py": NODES}))
    return proc, url, port


def listening_address(port: int) -> str:
    """The local address of the socket listening on ``port`` (from /proc/net/tcp, as the kernel has it)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, hexport = local.rsplit(":", 1)
                if int(hexport, 16) == port and state == "0A":  # LISTEN
                    if len(addr) == 8:
                        return socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1])
                    return addr
    raise AssertionError(f"nothing listens on port {port}")


@pytest.mark.parametrize("server", ["ImageServer", "BytesServer", "VideoServer"])
def test_servers_listen_on_loopback_unless_host_says_otherwise(tmp_path, server):
    proc, url, port = serve(tmp_path, server)
    try:
        assert listening_address(port) == "127.0.0.1"
    finally:
        drain(proc)
    proc, url, port = serve(tmp_path, server, 'host = "0.0.0.0"\n    insecure = true')  # open on purpose
    try:
        assert listening_address(port) == "0.0.0.0"
    finally:
        drain(proc)


@pytest.mark.parametrize("extra", ["", "allow_dirs = []"])
def test_video_server_without_allow_dirs_opens_no_local_file(tmp_path, extra):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 100)
    proc, url, _ = serve(tmp_path, "VideoServer", extra)
    try:
        for path in (str(clip), "/etc/hostname", "clip.mp4", "file:///etc/hostname"):
            r = requests.post(f"{url}/start/{requests.utils.quote(path, safe='')}", timeout=30)
            assert r.status_code == 400, (path, r.text)
        r = requests.post(f"{url}/start/{requests.utils.quote(str(clip), safe='')}", timeout=30)
        assert "local files are not accepted" in r.json()["detail"]
        assert requests.get(f"{url}/list", timeout=10).json() == []
        dead = f"rtsp://127.0.0.1:{free_port()}/none"  # live URLs are still taken
        r = requests.post(f"{url}/start/{requests.utils.quote(dead, safe='')}", timeout=30)
        assert r.status_code == 200, r.text
        requests.post(f"{url}/stop/0", timeout=10)
    finally:
        drain(proc)


@pytest.mark.parametrize("server", ["ImageServer", "BytesServer"])
def test_bodies_over_max_body_are_refused_413_with_or_without_a_length(tmp_path, server):
    proc, url, _ = serve(tmp_path, server, "max_body = 1000")
    try:
        r = requests.post(f"{url}/analyze/x", data=b"\xff" * 1001, timeout=30)
        assert r.status_code == 413 and "limit of 1000 bytes" in r.json()["detail"]
        r = requests.post(f"{url}/analyze/x", data=iter([b"\xff" * 600, b"\xff" * 600]), timeout=30)  # chunked
        assert r.status_code == 413 and "limit of 1000 bytes" in r.json()["detail"]
        r = requests.post(f"{url}/analyze/x", files={"file": ("a.bin", b"\xff" * 2000)}, timeout=30)
        assert r.status_code == 413
        if server == "BytesServer":
            r = requests.post(f"{url}/analyze/x", data=b"0123456789" * 100, timeout=30)
            assert r.status_code == 200 and r.content == (b"0123456789" * 100)[::-1]
    finally:
        drain(proc)


@pytest.mark.parametrize("server", ["BytesServer", "VideoServer"])
def test_request_heads_over_max_header_are_refused_and_the_server_goes_on(tmp_path, server):
    proc, url, _ = serve(tmp_path, server, "max_header = 8192")
    path = "/analyze/x" if server == "BytesServer" else "/list"
    method = requests.post if server == "BytesServer" else requests.get
    try:
        r = method(f"{url}{path}", data=b"abc", headers={"X-Big": "a" * 20000}, timeout=30)
        assert r.status_code == 431 and "limit of 8192 bytes" in r.json()["detail"]
        r = method(f"{url}{path}", data=b"abc", headers={f"X-H{i}": "a" * 90 for i in range(200)}, timeout=30)
        assert r.status_code == 431
        r = method(f"{url}{path}?q={'a' * 20000}", data=b"abc", timeout=30)
        assert r.status_code in (414, 431) and "limit of 8192 bytes" in r.json()["detail"]
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as s:  # an endless header
            s.settimeout(30)
            s.sendall(b"GET /list HTTP/1.1\r\nHost: x\r\nX-Endless: ")
            try:
                for _ in range(2048):  # 8 MiB: a server that keeps it all would read on and never answer
                    s.sendall(b"a" * 4096)
                reply = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                reply = b"closed"  # closed while data was still arriving: the 431 may be lost with the reset
            assert reply.startswith(b"HTTP/1.1 431 ") or reply in (b"", b"closed"), reply[:100]
        r = method(f"{url}{path}", data=b"abc", headers={"X-Fine": "a" * 4000}, timeout=30)
        assert r.status_code == 200
        if server == "BytesServer":
            assert r.content == b"cba"
    finally:
        drain(proc)


def gray_png(level: int) -> bytes:
    image = np.full((40, 60, 3), level, np.uint8)
    image[:20] = 255 - level  # top and bottom differ: a flip shows
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.mark.parametrize("server", ["BytesServer", "ImageServer"])
def test_requests_over_max_pending_get_503_with_retry_after_and_service_comes_back(tmp_path, server):
    gate = tmp_path / "gate"
    proc, url, _ = serve(tmp_path, server, "max_pending = 4\n    max_inflight = 2\n    timeout = 60", work="Gated",
                         work_args=f'gate = "{gate}"')

    def body(i: int) -> bytes:
        return gray_png(10 * i) if server == "ImageServer" else f"request {i:02d}".encode()

    def correct(i: int, reply) -> bool:
        if reply.status_code != 200:
            return False
        if server == "BytesServer":
            return reply.content == body(i)[::-1]
        got = cv2.imdecode(np.frombuffer(reply.content, np.uint8), cv2.IMREAD_COLOR)
        top, bottom = int(got[0, 0, 0]), int(got[-1, 0, 0])  # flipped: the first rows are the last ones sent
        return got.shape == (40, 60, 3) and abs(top - 10 * i) <= 3 and abs(bottom - (255 - 10 * i)) <= 3

    def ask(i: int):
        return i, requests.post(f"{url}/analyze/r{i}", data=body(i), headers={"Content-Type": "image/*"}, timeout=120)

    try:
        with ThreadPoolExecutor(12) as pool:
            pending = {pool.submit(ask, i) for i in range(12)}
            refused = []
            while len(refused) < 8:  # four are held at the closed gate: the other eight are refused at once
                done, pending = wait(pending, timeout=60, return_when=FIRST_COMPLETED)
                assert done, f"only {len(refused)} answered while the gate is closed"
                refused += [f.result() for f in done]
            assert len(pending) == 4 and not any(f.done() for f in pending)
            for i, reply in refused:
                assert reply.status_code == 503 and reply.headers["Retry-After"] == "1", reply.text
                assert "retry in 1 s" in reply.json()["detail"]
            gate.write_text("open")
            done, pending = wait(pending, timeout=120)
            assert not pending, "a request admitted under load never got its answer"
            for i, reply in (f.result() for f in done):
                assert correct(i, reply), (i, reply.status_code, reply.text[:200])
        for i in range(12, 20):  # the load is gone: every request is served again
            assert correct(i, ask(i)[1])
        with ThreadPoolExecutor(4) as pool:  # max_pending at once is fine
            assert all(correct(i, reply) for i, reply in pool.map(ask, range(20, 24)))
    finally:
        gate.write_text("open")
        drain(proc)


def test_image_server_refuses_bombs_truncated_and_corrupt_images_with_a_reason(tmp_path):
    from tests.unit.test_imagehead import bombs

    proc, url, _ = serve(tmp_path, "ImageServer", "max_pixels = 1000000")
    photo = gray_png(100)
    try:
        for name, body in bombs().items():
            r = requests.post(f"{url}/analyze/{name}", data=body, headers={"Content-Type": "image/*"}, timeout=30)
            assert r.status_code == 413, (name, r.text)
            assert "more than the limit of 1000000 pixels" in r.json()["detail"], (name, r.text)
        big = cv2.imencode(".jpg", np.zeros((1000, 1001, 3), np.uint8))[1].tobytes()  # a real one, over max_pixels
        r = requests.post(f"{url}/analyze/big", data=big, headers={"Content-Type": "image/*"}, timeout=30)
        assert r.status_code == 413 and "1001x1000 pixels" in r.json()["detail"]
        jpeg = cv2.imencode(".jpg", np.full((40, 60, 3), 90, np.uint8))[1].tobytes()
        zeroed = photo[:40] + bytes(len(photo) - 52) + photo[-12:]  # header and end kept, the pixels zeroed
        for body, words in [(photo[: len(photo) // 2], "truncated PNG"), (jpeg[:-50], "truncated JPEG"),
                            (zeroed, "could not be decoded: corrupt or truncated"), (b"GIF89a" + bytes(2), "truncated GIF")]:
            r = requests.post(f"{url}/analyze/bad", files={"file": ("x", body)}, timeout=30)
            assert r.status_code == 400 and words in r.json()["detail"], (words, r.text)
        r = requests.post(f"{url}/analyze/fine", data=photo, headers={"Content-Type": "image/*"}, timeout=30)
        assert r.status_code == 200
        got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert got.shape == (40, 60, 3) and abs(int(got[0, 0, 0]) - 100) <= 3  # reversed rows: the bottom on top
    finally:
        drain(proc)
