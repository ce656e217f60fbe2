"""The default restart policy of an app with a front door (megflow_mp.restarts), with real processes:
a worker killed by a signal is started again (at most 5 times within 60 s, with a backoff) and the
service goes on; ``restart = 0`` opts out; a spent budget ends the app with an error naming the node
and the budget. Apps without a front door keep ending at a killed worker (tests/integration/test_runtime.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import cv2
import numpy as np
import pytest
import requests

from tests.integration.conftest import communicate, drain, free_port, start_server, write_app
from tests.support.clips import make_clip

from megflow_mp.supervisor import children_of
from tests.support.procfs import proc_name

VIDEO_TOML = """
main = "video"
[[nodes]]                    # shared by every stream
name = "shared"
ty = "Measure"
{shared}
[[graphs]]
name = "subgraph"
inputs = [{ name = "inp", cap = 16, ports = ["shared:inp"] }]
outputs = [{ name = "out", cap = 16, ports = ["fmt:out"] }]
connections = [ { cap = 16, ports = ["shared:out", "fmt:inp"] } ]
    [[graphs.nodes]]
    name = "fmt"
    ty = "Fmt"
[[graphs]]
name = "video"
connections = [
  { cap = 16, ports = ["source:out", "destination:inp"] },
  { cap = 16, ports = ["source:inp", "destination:out"] },
]
    [[graphs.nodes]]
    name = "source"
    ty = "VideoServer"
    port = {port}
    allow_dirs = ["{clips}"]
    realtime = true
    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""

IMAGE_TOML = """
main = "serve"
[[graphs]]
name = "serve"
connections = [
  { cap = 16, ports = ["source:out", "flip:inp"] },
  { cap = 16, ports = ["flip:out", "source:inp"] },
]
    [[graphs.nodes]]
    name = "source"
    ty = "ImageServer"
    port = {port}
    timeout = 10
    {door}
    [[graphs.nodes]]
    name = "flip"
    ty = "Flip"
    {flip}
"""

NODES = """
import json
from megflow import register

@register(inputs=["inp"], outputs=["out"])
class Measure:
    def __init__(self, name, args):
        self.busy = args.get("busy", 0.0)  # seconds a frame takes
    def exec(self):
        import time
        e = self.inp.recv()
        if e is None: return
        time.sleep(self.busy)
        self.out.send(e.repack({"mean": float(e.msg["data"].mean())}))

@register(inputs=["inp"], outputs=["out"])
class Fmt:
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        self.out.send(e.repack(json.dumps({"stream": e.from_addr, "frame": e.partial_id, **e.msg})))

@register(inputs=["inp"], outputs=["out"])
class Flip:
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        e.msg["data"][:] = e.msg["data"][::-1].copy()
        self.out.send(e)
"""

PNG = cv2.imencode(".png", np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3))[1].tobytes()


def workers(app_pid: int, node: str) -> list[int]:
    """The live workers of ``node`` (each names its process ``mf:<node>``) of the app ``app_pid``."""
    return sorted(pid for pid in children_of(app_pid) if proc_name(pid) == f"mf:{node}"[:15])


def wait(cond, timeout: float, step: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    return None


def kill_and_wait_restart(app_pid: int, node: str, timeout: float = 30) -> tuple[int, float]:
    """SIGKILL the (only) worker of ``node``; returns the pid of the worker started in its place
    and the seconds until it appeared."""
    old, = workers(app_pid, node)
    killed = time.monotonic()
    os.kill(old, signal.SIGKILL)
    new = wait(lambda: [p for p in workers(app_pid, node) if p != old], timeout)
    assert new, f"{node} was not started again"
    return new[0], time.monotonic() - killed


def listing(url: str) -> dict[int, dict]:
    return {s["id"]: s for s in requests.get(f"{url}/list", timeout=10).json()}


def analyze(url: str) -> int:
    try:
        r = requests.post(f"{url}/analyze/x", data=PNG, headers={"Content-Type": "image/png"}, timeout=15)
        return r.status_code
    except requests.RequestException:
        return 0


@pytest.mark.parametrize("busy", [0.0, 0.012])  # 3 streams at 25 fps: idle, or busy 90% of the time
def test_a_killed_shared_node_of_a_videoserver_app_is_restarted_and_the_streams_go_on(tmp_path, busy):
    """The shared node's worker SIGKILLed while 3 streams play: it is started again, every stream
    keeps running (same id, frames increasing, its messages coming through the new worker); only
    the frames it held are lost. Then the VideoServer's own worker: a node that creates subgraph
    instances is not restarted by default, so the app ends naming it."""
    clips = tmp_path / "clips"
    clip = make_clip(clips / "long.mp4", frames=1000, size=(160, 96), gop=25)  # 40 s at 25 fps (realtime)
    toml = VIDEO_TOML.replace("{port}", str(free_port())).replace("{clips}", str(clips))
    toml = toml.replace("{shared}", f"busy = {busy}")
    proc, url = start_server(write_app(tmp_path, "video", {"video.toml": toml, "nodes.py": NODES}))
    got: dict[int, list] = {}

    def take(sid):
        got.setdefault(sid, []).extend(json.loads(m) for m in requests.get(f"{url}/get_msgs/{sid}", timeout=10).json())

    try:
        quoted = requests.utils.quote(str(clip), safe="")
        sids = [int(requests.post(f"{url}/start/{quoted}", timeout=30).text.rsplit(" ", 1)[1]) for _ in range(3)]
        assert wait(lambda: all(s["frames"] > 25 for s in listing(url).values()), 60), listing(url)
        for sid in sids:
            take(sid)
        before = listing(url)
        new, took = kill_and_wait_restart(proc.pid, "shared")
        print(f"\nshared node started again {took:.2f} s after the SIGKILL")

        def moved():  # every stream goes on decoding (frames keep increasing)
            now = listing(url)
            return now if all(now[s]["frames"] > before[s]["frames"] + 50 for s in sids) else None

        after = wait(moved, 30, step=0.05)
        assert after, listing(url)
        for sid in sids:
            take(sid)
        print("streams after the kill (state, frames, reason, dropped, messages_dropped):",
              {s: (after[s]["state"], after[s]["frames"], after[s]["reason"], after[s]["dropped"],
                   after[s]["messages_dropped"]) for s in sids})
        assert {after[s]["state"] for s in sids} == {"running"}, after
        lost = {}
        for sid in sids:  # its frames go through the restarted shared node: new messages come out
            frames = [m["frame"] for m in got[sid]]
            assert frames[-1] > before[sid]["frames"] and {m["stream"] for m in got[sid]} == {sid}, frames[-5:]
            lost[sid] = sorted(set(range(frames[-1])) - set(frames))
        print("frames without a message (lost in the killed worker), per stream:", lost)
        assert all(len(v) <= 16 + 16 + 1 for v in lost.values()), lost  # at most what its channels held
        assert sum(after[s]["dropped"] for s in sids) == 0, after  # a gap is a frame lost in the killed worker
        sid = int(requests.post(f"{url}/start/{quoted}", timeout=30).text.rsplit(" ", 1)[1])
        assert wait(lambda: take(sid) or got[sid], 30)  # a new stream goes through the new worker
        assert workers(proc.pid, "shared") == [new] and proc.poll() is None
    finally:  # the VideoServer's own worker: not restarted by default (it creates instances: restarts.py)
        for pid in workers(proc.pid, "source"):
            os.kill(pid, signal.SIGKILL)
        _, err = communicate(proc, 60)
    assert re.search(r"worker of node 'shared' \(@/shared, replica 0, pid \d+\) was killed by SIGKILL; restarting "
                     r"it \(1 of 5\) \[the default policy of an app with a front door", err), err[-3000:]
    assert proc.returncode == 1 and re.search(
        r"error: worker of node 'source' \(video/source, replica 0, pid \d+\) was killed by SIGKILL$", err, re.M), err


def test_a_killed_worker_of_an_imageserver_app_is_restarted_and_answers_again(tmp_path):
    """The node's worker, then the front door's own worker (it binds its port again: SO_REUSEADDR)."""
    toml = IMAGE_TOML.replace("{port}", str(free_port())).replace("{door}", "").replace("{flip}", "")
    proc, url = start_server(write_app(tmp_path, "image", {"image.toml": toml, "nodes.py": NODES}))
    try:
        assert analyze(url) == 200
        for node in ("flip", "source"):
            killed = time.monotonic()
            _, took = kill_and_wait_restart(proc.pid, node)
            assert wait(lambda: analyze(url) == 200, 30, step=0.02), node
            print(f"\n{node}: started again {took:.2f} s after the SIGKILL, answering 200 again "
                  f"{time.monotonic() - killed:.2f} s after it")
        assert all(analyze(url) == 200 for _ in range(5)) and proc.poll() is None
    finally:
        drain(proc)


def test_restart_zero_opts_out_and_the_app_ends_naming_the_node(tmp_path):
    toml = IMAGE_TOML.replace("{port}", str(free_port())).replace("{door}", "").replace("{flip}", "restart = 0")
    proc, url = start_server(write_app(tmp_path, "image", {"image.toml": toml, "nodes.py": NODES}))
    try:
        assert analyze(url) == 200
        os.kill(workers(proc.pid, "flip")[0], signal.SIGKILL)
        _, err = communicate(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert re.search(r"error: worker of node 'flip' \(serve/flip, replica 0, pid \d+\) was killed by SIGKILL$", err,
                     re.M), err[-3000:]
    assert "restarting" not in err


def test_six_kills_within_60_s_spend_the_budget_and_end_the_app_naming_node_and_budget(tmp_path):
    toml = IMAGE_TOML.replace("{port}", str(free_port())).replace("{door}", "").replace("{flip}", "")
    proc, url = start_server(write_app(tmp_path, "image", {"image.toml": toml, "nodes.py": NODES}))
    took = []
    try:
        first = time.monotonic()
        for _ in range(5):
            _, t = kill_and_wait_restart(proc.pid, "flip")
            took.append(round(t, 2))
        assert analyze(url) == 200  # after 5 restarts the service still answers
        os.kill(workers(proc.pid, "flip")[0], signal.SIGKILL)
        _, err = communicate(proc, 60)
        assert time.monotonic() - first < 60
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(f"\nrestarted after {took} s (backoff 0, 0.5, 1, 2, 4 s)")
    assert [t >= b for t, b in zip(took, (0, 0.5, 1, 2, 4))] == [True] * 5, took
    assert proc.returncode == 1
    assert re.search(r"error: worker of node 'flip' \(serve/flip, replica 0, pid \d+\) was killed by SIGKILL; not "
                     r"started again: its restart budget is spent, 5 restarts within the last 60 s \(the default "
                     r"policy of an app with a front door: a worker killed by a signal, at most 5 restarts within "
                     r"60 s\)", err), err[-3000:]
    for n in range(1, 6):
        assert f"restarting it ({n} of 5)" in err
