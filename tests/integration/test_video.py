"""VideoServer, VideoInput and ImageInput with real clips encoded by PyAV from the shared photos."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import drain, free_port, run_cli, write_app
from tests.integration.conftest import start_server
from tests.support.clips import data_dir, make_clip
from tests.support.fixtures import clip_dir, rtsp_packages, rtsp_server, rtsp_server_factory  # noqa: F401

from megflow_mp.supervisor import children_of
from tests.support.procfs import proc_name

VIDEO_TOML = """
main = "video"
[[nodes]]                    # heavy node: declared at top level, shared by every stream
name = "det"
ty = "Measure"
[[graphs]]
name = "subgraph"
inputs = [{ name = "inp", cap = 16, ports = ["det:inp"] }]
outputs = [{ name = "out", cap = 16, ports = ["fmt:out"] }]
connections = [ { cap = 16, ports = ["det:out", "fmt:inp"] } ]
    [[graphs.nodes]]         # light node: one per stream, in its existing worker
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
    ty = "{source}"
    {args}
    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""

NODES = """
import json
from megflow import register

@register(inputs=["inp"], outputs=["out"])
class Measure:
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        frame = e.msg["data"]
        self.out.send(e.repack({"shape": list(frame.shape), "mean": float(frame.mean())}))

@register(inputs=["inp"], outputs=["out"])
class Slow:  # slower than a live camera: 10 frames/s
    def __init__(self, name, args): pass
    def exec(self):
        import time
        e = self.inp.recv()
        if e is None: return
        time.sleep(0.1)
        self.out.send(e.repack({"shape": list(e.msg["data"].shape), "mean": 0.0}))

@register(inputs=["inp"], outputs=["out"])
class Raw:  # sends a dict out of the graph, not a string (stream 1's with bytes in it, which JSON cannot hold)
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        self.out.send(e.repack({"frame": e.partial_id, **e.msg, **({"raw": b"\\x01"} if e.from_addr == 1 else {})}))

@register(inputs=["inp"], outputs=["out"])
class Fmt:
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        self.out.send(e.repack(json.dumps({"stream": e.from_addr, "frame": e.partial_id, **e.msg})))
"""


def video_app(tmp_path, source: str, args: str) -> Path:
    toml = VIDEO_TOML.replace("{source}", source).replace("{args}", args)
    return write_app(tmp_path, "video", {"video.toml": toml, "nodes.py": NODES})


def server_args(allow: Path, **extra) -> str:
    lines = [f"port = {free_port()}", f'allow_dirs = ["{allow}"]'] + [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n    ".join(lines)


def wait_state(url: str, sid: int, states, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = next(s for s in requests.get(f"{url}/list", timeout=10).json() if s["id"] == sid)
        if info["state"] in states:
            return info
        time.sleep(0.05)
    raise AssertionError(f"stream {sid} never reached {states}: {info}")


def messages(url: str, sid: int) -> list[dict]:
    return [json.loads(m) for m in requests.get(f"{url}/get_msgs/{sid}", timeout=10).json()]


def test_eight_file_streams_through_a_shared_node_each_complete_and_in_order(tmp_path, clip_dir):  # noqa: F811
    proc, url = start_server(video_app(tmp_path, "VideoServer", server_args(clip_dir)))
    try:
        clip = clip_dir / "cat.mp4"
        quoted = requests.utils.quote(str(clip), safe="")
        ids = []
        for _ in range(8):
            r = requests.post(f"{url}/start/{quoted}", timeout=30)
            assert r.status_code == 200 and r.text.startswith("start stream whose id is "), r.text
            ids.append(int(r.text.rsplit(" ", 1)[1]))
        assert ids == list(range(8))
        got = {sid: [] for sid in ids}
        for sid in ids:
            info = wait_state(url, sid, {"finished"})
            assert info["frames"] == 50 and info["dropped"] == 0
        deadline = time.monotonic() + 30
        while any(len(v) < 50 for v in got.values()) and time.monotonic() < deadline:
            for sid in ids:
                got[sid] += messages(url, sid)
            time.sleep(0.05)
        for sid in ids:
            assert [m["frame"] for m in got[sid]] == list(range(50)), f"stream {sid}"
            assert all(m["stream"] == sid and m["shape"] == [360, 640, 3] for m in got[sid])
        assert messages(url, 3) == []  # taken means cleared
    finally:
        drain(proc)


def test_stop_refusals_and_a_dead_rtsp_source_next_to_a_working_stream(tmp_path, clip_dir):  # noqa: F811
    slow = make_clip(tmp_path / "clips" / "long.mp4", frames=250, size=(320, 180))
    (tmp_path / "clips" / "notes.txt").write_text("not a video")
    args = server_args(tmp_path / "clips", realtime=True, backoff_initial=0.1, backoff_max=0.5)
    proc, url = start_server(video_app(tmp_path, "VideoServer", args))
    try:
        dead = f"rtsp://127.0.0.1:{free_port()}/nothing"
        r = requests.post(f"{url}/start/{requests.utils.quote(dead, safe='')}", timeout=30)
        assert r.status_code == 200
        dead_id = int(r.text.rsplit(" ", 1)[1])
        r = requests.post(f"{url}/start/{requests.utils.quote(str(slow), safe='')}", timeout=30)
        live_id = int(r.text.rsplit(" ", 1)[1])
        info = wait_state(url, dead_id, {"reconnecting"})
        assert "refused" in info["reason"]
        wait_state(url, live_id, {"running"})
        time.sleep(1.0)  # let both run side by side
        assert requests.post(f"{url}/stop/{live_id}", timeout=10).text == f"stop stream {live_id} success"
        info = wait_state(url, live_id, {"stopped"})
        assert 0 < info["frames"] < 250
        assert len(messages(url, live_id)) > 0
        assert wait_state(url, dead_id, {"reconnecting"})["reconnects"] >= 2  # still retrying, not stuck
        for path, code, words in [("/etc/hostname", 400, "not under an allowed directory"),
                                  (str(tmp_path / "clips" / "notes.txt"), 400, "cannot decode"),
                                  ("ftp://example/x", 400, "only rtsp"),
                                  (str(tmp_path / "clips" / "missing.mp4"), 400, "no such file")]:
            r = requests.post(f"{url}/start/{requests.utils.quote(path, safe='')}", timeout=30)
            assert r.status_code == code and words in r.json()["detail"], (path, r.text)
        assert requests.post(f"{url}/stop/99", timeout=10).status_code == 404
        assert requests.get(f"{url}/get_msgs/99", timeout=10).status_code == 404
    finally:
        drain(proc)


def _rss_kib(pids) -> int:
    """Private (anonymous) resident memory of ``pids``: the heap, where a leak shows. Shared-memory
    pages are left out: a frame ring touches its pages once, then reuses them."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))
    return total


@pytest.mark.slow
def test_100_start_stop_cycles_leave_memory_flat(tmp_path):
    clip = make_clip(tmp_path / "clips" / "short.mp4", frames=10, size=(320, 180))
    # /list keeps 16 ended streams (by design, up to ``history``): growth beyond that is a leak
    proc, url = start_server(video_app(tmp_path, "VideoServer", server_args(tmp_path / "clips", history=16)))
    try:
        quoted = requests.utils.quote(str(clip), safe="")

        def cycles(n):
            for _ in range(n):
                sid = int(requests.post(f"{url}/start/{quoted}", timeout=30).text.rsplit(" ", 1)[1])
                requests.post(f"{url}/stop/{sid}", timeout=10)
                wait_state(url, sid, {"stopped", "finished"})
                messages(url, sid)

        workers = children_of(proc.pid)
        cycles(100)  # warm up: allocator pools and arenas, caches (glibc keeps freed thread stacks)
        # two windows of 100 cycles: a leak grows in both; a one-off step (an allocator arena, a
        # cached thread stack) shows in one of them only
        before = _rss_kib(workers)
        cycles(100)
        mid = _rss_kib(workers)
        cycles(100)
        after = _rss_kib(workers)
        grew = min(mid - before, after - mid)
        assert grew <= before * 0.02, f"RSS grew in both windows: {before} -> {mid} -> {after} KiB"
        assert len(children_of(proc.pid)) == len(workers)
    finally:
        drain(proc)


def test_video_input_runs_every_url_and_repeat_then_ends(tmp_path, clip_dir):  # noqa: F811
    args = f'urls = ["{clip_dir / "cat.mp4"}", "{clip_dir / "cat_exit.mp4"}"]\n    repeat = 2\n    print_msgs = true'
    r = run_cli("run", "-p", video_app(tmp_path, "VideoInput", args), timeout=120)
    assert r.returncode == 0, r.stderr
    per_stream = {}
    for line in r.stderr.splitlines():
        if "INFO stream " in line:
            msg = json.loads(line.split(": ", 1)[1])
            per_stream.setdefault(msg["stream"], []).append(msg["frame"])
    assert sorted(per_stream) == [0, 1, 2, 3]
    assert all(frames == list(range(50)) for frames in per_stream.values())


def test_image_input_sends_each_image_of_the_directories(tmp_path):
    data = data_dir() / "images"
    toml = VIDEO_TOML.replace('ty = "{source}"', 'ty = "ImageInput"').replace("{args}", f'urls = ["{data}"]')
    toml = toml.replace("[[nodes]]                    # heavy node: declared at top level, shared by every stream\nname = \"det\"\nty = \"Measure\"\n", "")
    toml = toml.replace('inputs = [{ name = "inp", cap = 16, ports = ["det:inp"] }]', 'inputs = [{ name = "inp", cap = 16, ports = ["fmt:inp"] }]')
    toml = toml.replace('connections = [ { cap = 16, ports = ["det:out", "fmt:inp"] } ]\n', "")
    nodes = NODES.replace('self.out.send(e.repack(json.dumps({"stream": e.from_addr, "frame": e.partial_id, **e.msg})))',
                          'self.out.send(e.repack(json.dumps({"stem": e.msg["extra_data"], "shape": list(e.msg["data"].shape)})))')
    app = write_app(tmp_path, "images", {"images.toml": toml, "nodes.py": nodes})
    r = run_cli("run", "-p", app, timeout=120)
    assert r.returncode == 0, r.stderr
    stems = sorted(json.loads(line.split(": ", 1)[1])["stem"] for line in r.stderr.splitlines()
                   if "INFO " in line and '"stem"' in line)
    expected = sorted(p.stem for p in data.iterdir() if p.suffix in (".jpg", ".bmp"))
    assert stems == expected


def test_rtsp_stream_reconnects_after_its_server_dies_and_a_file_stream_goes_on(tmp_path, clip_dir,  # noqa: F811
                                                                                   rtsp_server):  # noqa: F811
    slow = make_clip(tmp_path / "clips" / "long.mp4", frames=200, size=(320, 180))
    args = server_args(tmp_path / "clips", realtime=True, backoff_initial=0.2, backoff_max=1.0)
    proc, url = start_server(video_app(tmp_path, "VideoServer", args))
    try:
        q = requests.utils.quote
        live = int(requests.post(f"{url}/start/{q(rtsp_server.url, safe='')}", timeout=30).text.rsplit(" ", 1)[1])
        files = int(requests.post(f"{url}/start/{q(str(slow), safe='')}", timeout=30).text.rsplit(" ", 1)[1])
        wait_state(url, live, {"running"})
        before = wait_frames(url, live, 10)
        rtsp_server.kill()
        info = wait_state(url, live, {"reconnecting"})
        file_frames = wait_frames(url, files, 1)
        time.sleep(0.5)  # the dead camera must not stall the file stream
        assert wait_frames(url, files, file_frames + 5) > file_frames
        assert "retry in" in info["reason"]
        rtsp_server.restart()
        again = wait_state(url, live, {"running"})
        assert again["reason"] is None, again  # running again: the old disconnect is not shown
        after = wait_frames(url, live, before + 10)
        assert after > before
        assert stream_info(url, live)["reason"] is None
        got = messages(url, live)
        assert [m["frame"] for m in got] == sorted(m["frame"] for m in got)  # indexes go on across reconnects
        requests.post(f"{url}/stop/{live}", timeout=10)
        stopped = wait_state(url, live, {"stopped"})
        assert stopped["reconnects"] >= 1 and stopped["reason"] is None, stopped
    finally:
        drain(proc)


def stream_info(url: str, sid: int) -> dict:
    return next(s for s in requests.get(f"{url}/list", timeout=10).json() if s["id"] == sid)


def wait_frames(url: str, sid: int, at_least: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = next(s for s in requests.get(f"{url}/list", timeout=10).json() if s["id"] == sid)
        if info["frames"] >= at_least:
            return info["frames"]
        time.sleep(0.05)
    raise AssertionError(f"stream {sid} stuck at {info}")


def test_a_slow_pipeline_drops_the_oldest_live_frames_and_counts_them(tmp_path, rtsp_server):  # noqa: F811
    app = video_app(tmp_path, "VideoServer", server_args(tmp_path))
    toml = app / "video.toml"
    toml.write_text(toml.read_text().replace('ty = "Measure"', 'ty = "Slow"'))
    proc, url = start_server(app)
    try:
        sid = int(requests.post(f"{url}/start/{requests.utils.quote(rtsp_server.url, safe='')}",
                                timeout=30).text.rsplit(" ", 1)[1])
        wait_state(url, sid, {"running"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = next(s for s in requests.get(f"{url}/list", timeout=10).json() if s["id"] == sid)
            if info["dropped"] > 10:
                break
            time.sleep(0.1)
        assert info["dropped"] > 10 and info["state"] == "running", info
        got = messages(url, sid)
        frames = [m["frame"] for m in got]
        assert frames == sorted(frames) and len(frames) < info["frames"]  # what was kept is in order
    finally:
        drain(proc)


def test_video_server_openapi_lists_its_endpoints_with_schemas(tmp_path):
    proc, url = start_server(video_app(tmp_path, "VideoServer", server_args(tmp_path)))
    try:
        spec = requests.get(f"{url}/openapi.json", timeout=10).json()
        assert {"/start/{url}", "/stop/{sid}", "/list", "/get_msgs/{sid}"} <= set(spec["paths"])
        listed = spec["paths"]["/list"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert listed["items"]["$ref"].endswith("/StreamInfo")
        assert {"state", "frames", "fps", "dropped", "corrupt"} <= set(spec["components"]["schemas"]["StreamInfo"]["properties"])
        assert requests.get(f"{url}/docs", timeout=10).status_code == 200
    finally:
        drain(proc)


def test_dict_messages_are_objects_and_what_json_cannot_hold_is_one_warning_per_stream(tmp_path, clip_dir):  # noqa: F811
    toml = VIDEO_TOML.replace("{source}", "VideoServer").replace("{args}", server_args(clip_dir))
    app = write_app(tmp_path, "video", {"video.toml": toml.replace('ty = "Fmt"', 'ty = "Raw"'), "nodes.py": NODES})
    proc, url = start_server(app)
    try:
        quoted = requests.utils.quote(str(clip_dir / "cat.mp4"), safe="")
        for sid in (0, 1):
            assert requests.post(f"{url}/start/{quoted}", timeout=30).status_code == 200
        got = {0: [], 1: []}
        for sid in (0, 1):
            wait_state(url, sid, {"finished"})
            deadline = time.monotonic() + 30
            while len(got[sid]) < 50 and time.monotonic() < deadline:
                got[sid] += requests.get(f"{url}/get_msgs/{sid}", timeout=10).json()
        assert all([m["frame"] for m in got[sid]] == list(range(50)) for sid in (0, 1))
        assert {m["mean"] > 0 for sid in (0, 1) for m in got[sid]} == {True}
        assert "raw" not in got[0][0] and {m["raw"] for m in got[1]} == {"b'\\x01'"}  # shown with str()
    finally:
        _, err = drain(proc)
    warnings = [line for line in err.splitlines() if "that JSON cannot hold whole" in line]
    assert [w.split("stream ", 1)[1].split(" ", 1)[0] for w in warnings] == ["1"], err
    assert all("a dict out" in w for w in warnings)


def _decoders(proc_pid: int) -> list[int]:
    """The VideoServer's workers (processes named ``mf:source``) of the app ``proc_pid``."""
    return sorted(pid for pid in children_of(proc_pid) if proc_name(pid) == "mf:source")


def test_cloned_videoserver_runs_streams_in_each_replica_and_lists_them_all(tmp_path):
    """``cloned = 2``: streams alternate between the replicas (least loaded first), each decoded in
    its own process; /list, /get_msgs and /stop reach the replica that runs a stream; a replica
    killed and restarted (``restart``) shows its streams as error with the reason, the others go on."""
    import os
    import signal

    clip = make_clip(tmp_path / "clips" / "clip.mp4", frames=60, size=(160, 96))
    args = server_args(tmp_path / "clips", realtime=True) + "\n    cloned = 2\n    restart = 1"
    proc, url = start_server(video_app(tmp_path, "VideoServer", args))
    try:
        decoders = _decoders(proc.pid)
        quoted = requests.utils.quote(str(clip), safe="")
        sids = [int(requests.post(f"{url}/start/{quoted}", timeout=30).text.rsplit(" ", 1)[1]) for _ in range(4)]
        listed = {s["id"]: s for s in requests.get(f"{url}/list", timeout=10).json()}
        assert [listed[s]["replica"] for s in sids] == [0, 1, 0, 1], listed
        assert all(listed[s]["machine"] is None for s in sids)  # one machine: no cluster
        assert requests.post(f"{url}/stop/{sids[3]}", timeout=10).status_code == 200  # on replica 1
        for sid in sids[:2]:
            assert wait_state(url, sid, {"finished"})["frames"] == 60
            got = messages(url, sid)
            assert sorted(m["frame"] for m in got) == list(range(60)) and {m["stream"] for m in got} == {sid}
        assert wait_state(url, sids[3], {"stopped"})["replica"] == 1
        # a stream on replica 1, then replica 1 SIGKILLed: restarted, its stream lost with the reason
        kept, victim = (int(requests.post(f"{url}/start/{quoted}", timeout=30).text.rsplit(" ", 1)[1])
                        for _ in range(2))
        assert wait_state(url, victim, {"running"})["replica"] == 1
        os.kill(decoders[1], signal.SIGKILL)
        info = wait_state(url, victim, {"error"})
        assert "replica 1" in info["reason"] and "restarted" in info["reason"], info
        assert wait_state(url, kept, {"finished"})["frames"] == 60 and len(messages(url, kept)) == 60
        after = int(requests.post(f"{url}/start/{quoted}", timeout=30).text.rsplit(" ", 1)[1])
        assert wait_state(url, after, {"finished"})["frames"] == 60  # the app takes streams again
        assert len(messages(url, after)) == 60
        assert proc.poll() is None
    finally:
        drain(proc)
