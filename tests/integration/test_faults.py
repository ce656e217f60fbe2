"""Faults that must stay local: a node raising on one stream or one request ends that stream or
answers that request with an error; every other stream and request goes on, and the app with them."""

from __future__ import annotations

import json
import re
import time

import requests

from conftest import drain, free_port, start_server, write_app
from tests.support.fixtures import clip_dir  # noqa: F401

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
            assert re.fullmatch(rf"node '([^']*/)?{node}' failed: ValueError: {node} cannot take frame 4 of stream {sid}",
                                info["reason"]), info
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
