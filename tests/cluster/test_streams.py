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
from tests.integration.conftest import free_port
from tests.support.clips import make_clip

STREAMS, WAVE, FRAMES = 50, 10, 8


def config(tmp_path: Path, port: int) -> Path:
    text = f"""main = "main"
[[graphs]]
name = "sub"
inputs = [{{ name = "inp", cap = 16, ports = ["tally:inp"] }}]
outputs = [{{ name = "out", cap = 16, ports = ["tally:out"] }}]
    [[graphs.nodes]]
    name = "tally"
    ty = "Tally"
    placement = {{ resources = {{ site_b = 1 }} }}
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
    [[graphs.nodes]]
    name = "dest"
    ty = "sub"
"""
    path = tmp_path / "streams.toml"
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
