"""VideoServer streams whose per-stream node runs on another machine of a real Ray cluster: 50
streams started and stopped, each stream's frames answered from machine ``b``, and afterwards no
process more on any machine than before and the remote worker's memory where it was."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import requests

from tests.cluster.conftest import app_processes, host_tree, node_ids, start_app
from tests.support.procfs import proc_name
from tests.integration.conftest import free_port
from tests.support.clips import make_clip

STREAMS, WAVE, FRAMES = 50, 10, 8


def config(tmp_path: Path, port: int, tally: str = "placement = { resources = { site_b = 1 } }",
           source: str = "", name: str = "streams.toml") -> Path:
    """A VideoServer (its extra keys: ``source``) whose per-stream subgraph is one ``Tally`` node
    (its extra keys: ``tally``; by default placed on machine ``b``)."""
    text = f"""main = "main"
[[graphs]]
name = "sub"
inputs = [{{ name = "inp", cap = 16, ports = ["tally:inp"] }}]
outputs = [{{ name = "out", cap = 16, ports = ["tally:out"] }}]
    [[graphs.nodes]]
    name = "tally"
    ty = "Tally"
    {tally}
[[graphs]]
name = "main"
connections = [
    {{ cap = 16, ports = ["source:out", "dest:inp"] }},
    {{ cap = 16, ports = ["source:inp", "dest:out"] }},
]
    [[graphs.nodes]]
    name = "source"
    ty = "VideoServer"
    port = {port}
    allow_dirs = ["{tmp_path}"]
    {source}
    [[graphs.nodes]]
    name = "dest"
    ty = "sub"
"""
    path = tmp_path / name
    path.write_text(text)
    return path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_wave(url: str, clip: Path) -> list[int]:
    sids = []
    for _ in range(WAVE):
        r = requests.post(f"{url}/start/{urllib.parse.quote(str(clip), safe='')}", timeout=30)
        assert r.status_code == 200, r.text
        sids.append(int(r.text.rsplit(" ", 1)[1]))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = {s["id"]: s for s in requests.get(f"{url}/list", timeout=10).json()}
        if all(listed[s]["state"] in ("finished", "error") for s in sids):
            break
        time.sleep(0.1)
    return sids


def test_fifty_streams_answered_from_another_machine_and_nothing_left(ray_cluster, tmp_path):
    ids = node_ids(ray_cluster)
    clip = make_clip(tmp_path / "clip.mp4", frames=FRAMES, size=(160, 96))
    port = free_port()
    cfg = config(tmp_path, port)
    log = tmp_path / "stderr.txt"
    url = f"http://127.0.0.1:{port}"
    proc = start_app(cfg, ray_cluster.address, log)
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert "listening on" in log.read_text(), log.read_text()[-3000:]
        all_sids = run_wave(url, clip)  # a first wave: what is allocated once is allocated
        (host, workers), = host_tree().items()
        before = {w: rss_kib(w) for w in workers}
        for _ in range(STREAMS // WAVE - 1):
            all_sids += run_wave(url, clip)
        listed = {s["id"]: s for s in requests.get(f"{url}/list", timeout=10).json()}
        messages = {sid: [json.loads(m) for m in requests.get(f"{url}/get_msgs/{sid}", timeout=10).json()]
                    for sid in all_sids}
        after_tree = host_tree()
        after = {w: rss_kib(w) for w in workers}
    finally:
        proc.send_signal(2)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert len(all_sids) == STREAMS
    assert all(listed[s]["state"] == "finished" and listed[s]["frames"] == FRAMES for s in all_sids), listed
    assert all([m["frame"] for m in messages[s]] == list(range(FRAMES)) for s in all_sids)
    assert {m["node"] for ms in messages.values() for m in ms} == {ids["b"]}  # every frame answered on b
    assert after_tree == {host: workers}  # the same processes on machine b: none added, none lost
    growth = {w: after[w] - before[w] for w in workers}
    print(f"RSS of machine b's worker over {STREAMS - WAVE} streams: {before} -> {after} KiB")
    assert all(g < 0.05 * before[w] for w, g in growth.items()), (before, after)
    assert not app_processes(str(cfg)) and not app_processes("megflow_mp.cluster.host")


# --- streams spread over the machines --------------------------------------------------------------------------


def spread_config(tmp_path: Path, port: int, restart: str = "") -> Path:
    """A VideoServer with 2 stream runners and a per-stream node with 2 replicas, all unplaced: dealt
    over the machines (replica 0 on the driver's, replica 1 on ``b``)."""
    return config(tmp_path, port, tally="cloned = 2", source=f"cloned = 2\n    realtime = true\n    {restart}",
                  name="spread.toml")


def started_app(tmp_path: Path, cfg: Path, address: str, port: int):
    log = tmp_path / "stderr.txt"
    proc = start_app(cfg, address, log)
    deadline = time.monotonic() + 60
    while "listening on" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert "listening on" in log.read_text(), log.read_text()[-3000:]
    return proc, log, f"http://127.0.0.1:{port}"


def start(url: str, target: str) -> int:
    r = requests.post(f"{url}/start/{urllib.parse.quote(target, safe='')}", timeout=60)
    assert r.status_code == 200, r.text
    return int(r.text.rsplit(" ", 1)[1])


def listed(url: str) -> dict[int, dict]:
    return {s["id"]: s for s in requests.get(f"{url}/list", timeout=10).json()}


def wait_for(cond, timeout: float = 60, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


def test_streams_spread_over_the_machines_each_decoded_and_answered_where_it_runs(ray_cluster, tmp_path):
    ids = node_ids(ray_cluster)
    frames = 40
    clip = make_clip(tmp_path / "clip.mp4", frames=frames, size=(160, 96))
    port = free_port()
    cfg = spread_config(tmp_path, port)
    proc, log, url = started_app(tmp_path, cfg, ray_cluster.address, port)
    try:
        runners = {}  # machine b's VideoServer runner: a worker of its host, named after the node
        for host, workers in host_tree().items():
            for w in workers:
                if proc_name(w) == "mf:source":
                    runners[host] = w
        sids = [start(url, str(clip)) for _ in range(4)]  # paced at the clip's rate: all four run at once
        running = listed(url)
        assert wait_for(lambda: all(listed(url)[s]["state"] == "finished" for s in sids)), listed(url)
        info = listed(url)
        messages = {s: [json.loads(m) for m in requests.get(f"{url}/get_msgs/{s}", timeout=10).json()] for s in sids}
    finally:
        proc.send_signal(2)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert len(runners) == 1, host_tree()  # one runner on machine b
    assert [running[s]["replica"] for s in sids] == [0, 1, 0, 1]  # the least loaded runner each time
    for s in sids:
        machine = ids["head"] if info[s]["replica"] == 0 else ids["b"]
        assert info[s]["machine"].startswith(f"machine {info[s]['replica']} (")
        assert f"Ray node {machine[:8]}" in info[s]["machine"], info[s]
        assert info[s]["frames"] == frames
        # its instance ran on its runner's machine: every frame answered there, all of them, in order
        assert {m["node"] for m in messages[s]} == {machine}, (s, messages[s][:2])
        assert sorted(m["frame"] for m in messages[s]) == list(range(frames))
    assert not app_processes(str(cfg)) and not app_processes("megflow_mp.cluster.host")


def test_a_lost_machine_ends_its_streams_restarts_live_ones_and_the_app_goes_on(ray_cluster, tmp_path):
    """Machine b (a runner and a per-stream replica) killed mid-run: its file stream is ``error``
    naming the machine, its live (RTSP) stream starts again on machine 0, the streams of machine 0
    go on, and new streams start there. (Last in this module: it removes machine b.)"""
    from tests.support.rtsp import RtspServer

    ids = node_ids(ray_cluster)
    clip = make_clip(tmp_path / "clip.mp4", frames=400, size=(160, 96))
    port = free_port()
    cfg = spread_config(tmp_path, port, restart="restart = 1")
    with RtspServer(pattern="ball") as camera:
        proc, log, url = started_app(tmp_path, cfg, ray_cluster.address, port)
        try:
            a = start(url, str(clip))  # replica 0 (machine 0)
            b_file = start(url, str(clip))  # replica 1 (machine b)
            a_live = start(url, camera.url)  # replica 0
            b_live = start(url, camera.url)  # replica 1
            before = listed(url)
            assert [before[s]["replica"] for s in (a, b_file, a_live, b_live)] == [0, 1, 0, 1], before
            assert wait_for(lambda: all(listed(url)[s]["frames"] > 10 for s in (a, b_file, a_live, b_live))), \
                (listed(url), f"camera running: {camera.running}, exit code {camera.proc.poll()}", camera.log()[-2000:])
            ray_cluster.remove_node(ray_cluster.b, allow_graceful=False)  # its raylet and every process of it
            lost = time.monotonic()
            assert wait_for(lambda: listed(url)[b_file]["state"] == "error", 60), listed(url)
            moved = wait_for(lambda: listed(url)[b_live]["replica"] == 0 and listed(url)[b_live]["frames"] > 10, 60)
            took = time.monotonic() - lost
            after = listed(url)
            frames_a = after[a]["frames"]
            assert wait_for(lambda: listed(url)[a]["frames"] > frames_a + 10, 30), listed(url)  # machine 0 goes on
            c = start(url, str(clip))  # a new stream: on the runner left
            assert wait_for(lambda: listed(url)[c]["frames"] > 10, 30), listed(url)
            final = listed(url)
            alive = proc.poll() is None
        finally:
            proc.send_signal(2)
            proc.wait(timeout=60)
    err = log.read_text()
    print(f"lost machine b: live stream running again on machine 0 after {took:.1f} s")
    assert alive, err[-3000:]
    assert moved, (after, err[-3000:])
    assert "was lost" in after[b_file]["reason"] and after[b_file]["replica"] == 1, after[b_file]
    assert final[c]["replica"] == 0 and final[b_live]["machine"].startswith("machine 0 (")
    assert final[a]["state"] in ("running", "finished", "stopped") and final[a_live]["state"] in ("running", "stopped")
    assert "the app goes on" in err and ids["b"][:8] in err, err[-3000:]
    assert not app_processes(str(cfg)) and not app_processes("megflow_mp.cluster.host")
