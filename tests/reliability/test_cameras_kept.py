"""Cameras that stay up, with real models: the shipped simple_det_classify video app (YOLOX-nano and
MobileNetV2, shared by every stream) with cameras declared in its config and one started over HTTP,
on a real RTSP server. The app SIGKILLed and started again; its shared detector SIGKILLed under
load. Each row: the time until every stream runs again, and the streams lost."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import requests

from megflow_mp.supervisor import children_of
from tests.reliability.servers import ROOT, ServerApp, free_port, wait_until
from tests.support.procfs import proc_name
from tests.support.rtsp import RtspServer

SECTION = "Cameras that stay up (simple_det_classify with real models, real RTSP server)"
SHIPPED = ROOT / "configs" / "simple_det_classify" / "video_cpu.toml"


def detection_app(root: Path, port: int, cameras: dict[str, str]) -> Path:
    """The shipped app, its VideoServer given ``port``, a state dir and ``cameras`` (id -> url) declared."""
    text = SHIPPED.read_text()
    plugins = ROOT / "plugins" / "simple_det_classify"
    declared = ", ".join(f'{{ id = "{sid}", url = "{url}" }}' for sid, url in cameras.items())
    server = "port = {{ port | default(8085) }}"
    assert server in text
    text = text.replace(server, f'port = {port}\n    state_dir = "{root / "state"}"\n    streams = [{declared}]')
    app = root / "detapp"  # run as `-p detapp`: the plugin's modules beside the config
    app.mkdir(parents=True, exist_ok=True)
    (app / "detapp.toml").write_text(text)
    for module in plugins.glob("*.py"):
        (app / module.name).symlink_to(module)
    return app


def gone(pid: int) -> bool:
    """Process ``pid`` has exited: no longer in /proc, or a zombie (reaped here when this process is
    its subreaper, as the suite's integration fixtures make it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return False
    except OSError:
        return True
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return True


def infos(url: str) -> dict:
    try:
        return {s["id"]: s for s in requests.get(f"{url}/streams", timeout=10).json()}
    except requests.RequestException:
        return {}


def all_running_past(url: str, frames: dict) -> list:
    """The streams of ``frames`` (id -> a frame count) not yet running with more frames than that."""
    now = infos(url)
    return [sid for sid, n in frames.items() if not (sid in now and now[sid]["state"] == "running"
                                                       and now[sid]["frames"] > n)]


def test_cameras_come_back_after_the_app_or_its_detector_is_killed(tmp_path, figures):
    n = 2  # declared cameras, at both sizes: 3 cameras at 25 fps through YOLOX-nano fill 2 cores
    with RtspServer(pattern="ball") as cam:
        cameras = {f"cam{i}": cam.url for i in range(n)}
        port = free_port()
        app_dir = detection_app(tmp_path, port, cameras)
        app = ServerApp(app_dir, port, ROOT)
        try:
            r = requests.post(f"{app.url}/streams", json={"url": cam.url, "id": "door"}, timeout=30)
            assert r.status_code == 201, r.text
            ids = [*cameras, "door"]
            assert wait_until(lambda: not all_running_past(app.url, dict.fromkeys(ids, 5)), 90), infos(app.url)
            ready = requests.get(f"{app.url}/readyz", timeout=10)
            # the supervisor SIGKILLed: every process of the app is gone; the same config started again
            workers = children_of(app.proc.pid)
            app.proc.send_signal(signal.SIGKILL)
            app.proc.wait(10)
            assert wait_until(lambda: all(map(gone, workers)), 30)
            killed = time.monotonic()
            app.stop()
            app = ServerApp(app_dir, port, ROOT)
            back = wait_until(lambda: not all_running_past(app.url, dict.fromkeys(ids, 0)), 90)
            recover_s = time.monotonic() - killed
            now = infos(app.url)
            lost = [(sid, now.get(sid, {}).get("state"), now.get(sid, {}).get("reason"))
                    for sid in all_running_past(app.url, dict.fromkeys(ids, 0))]
            figures.add(SECTION, f"the app SIGKILLed with {len(ids)} cameras ({n} declared, 1 started over HTTP), "
                        "then started again: every camera running again under its id", len(ids),
                        len(ids) - len(lost), len(lost),
                        [f"running again {recover_s:.1f} s after the SIGKILL (the new app's start and model loading "
                         f"included); /readyz before the kill: {ready.status_code}; not back: {lost}"]
                        + (app.lines[-12:] if lost else []))
            assert back, infos(app.url)
            # the shared detector SIGKILLed under load: restarted, every stream running again
            det = [p for p in children_of(app.proc.pid) if proc_name(p) == "mf:det"]
            assert len(det) == 1
            before = {sid: s["frames"] for sid, s in infos(app.url).items()}
            os.kill(det[0], signal.SIGKILL)
            killed = time.monotonic()
            unready = wait_until(lambda: requests.get(f"{app.url}/readyz", timeout=10).status_code == 503, 5, step=0.02)
            # a result for a frame decoded after the kill went through the new detector (its model loaded again)
            fresh: dict = {}

            def results_from_the_new_detector() -> bool:
                for sid in ids:
                    for m in requests.get(f"{app.url}/get_msgs/{sid}", timeout=10).json():
                        if json.loads(m)["frame"] > before[sid]:
                            fresh.setdefault(sid, time.monotonic() - killed)
                return len(fresh) == len(ids)
            has_msgs = wait_until(results_from_the_new_detector, 90, step=0.1)
            recover_s = max(fresh.values(), default=float("nan"))
            back = wait_until(lambda: not all_running_past(app.url, before), 30)
            lost = all_running_past(app.url, before)
            states = {sid: (s["state"], s["restarts"]) for sid, s in infos(app.url).items()}
            figures.add(SECTION, f"the shared detector's worker SIGKILLed under load ({len(ids)} cameras): restarted, "
                        "every camera running with new results", len(ids), len(ids) - len(lost), len(lost),
                        [f"every camera had a result of a frame decoded after the kill {recover_s:.1f} s after it (the "
                         f"detector's model loaded again); /readyz "
                         f"503 seen meanwhile: {unready}; states (state, restarts): {states}"])
            assert back and has_msgs, infos(app.url)
            assert requests.get(f"{app.url}/readyz", timeout=10).status_code == 200
        finally:
            app.stop()
