"""The apps' video_visualize.toml configs: POST /start a clip, then /view/0/live.mp4 plays it with the
app's results drawn (the boxes' colours are checked in the decoded frames; cat_finder's box turns
green once the registered cat is named)."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import threading
import urllib.parse

import av
import numpy as np
import pytest
import requests

from tests.integration.conftest import ROOT, cli, env
from tests.support.clips import load_image, make_clip
from tests.support.fixtures import redis_server  # noqa: F401

pytestmark = pytest.mark.slow
GREEN = (0, 200, 0)  # megflow_mp.live.overlay.GREEN: named cats, simple_det_classify's objects, non-alert tracks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The cat sliding across 640x360 for 24 s (long enough to be watched while it runs)."""
    return make_clip(tmp_path_factory.mktemp("apps") / "cat.mp4", frames=600, size=(640, 360), fps=25)


def run_app(app: str, config: str, variables: dict, tmp_path) -> subprocess.Popen:
    vars_file = tmp_path / "vars.toml"
    vars_file.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in variables.items()))
    proc = subprocess.Popen(cli("run", "-c", ROOT / "configs" / app / config, "-p", ROOT / "plugins" / app,
                                "--dynamic", vars_file), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env(), cwd=ROOT)
    for line in iter(proc.stderr.readline, ""):
        if "listening on" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc
    raise AssertionError(f"{app} did not start: {proc.communicate()[1][-3000:]}")


def watch(base: str, clip_path, frames: int = 40) -> list[np.ndarray]:
    """Start the clip, read /view/0/live.mp4 until ``frames`` frames decoded; the decoded BGR frames."""
    reply = requests.post(f"{base}/start/{urllib.parse.quote(str(clip_path), safe='')}", timeout=30)
    assert reply.text == "start stream whose id is 0"
    response = requests.get(f"{base}/view/0/live.mp4", stream=True, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith('video/mp4; codecs="avc1.')
    decoded: list[np.ndarray] = []
    data = bytearray()
    for chunk in response.iter_content(chunk_size=None):
        data += chunk
        if len(data) > 200_000 or len(decoded) < frames:
            decoded = decode(bytes(data))
        if len(decoded) >= frames:
            break
    response.close()
    return decoded


def decode(data: bytes) -> list[np.ndarray]:
    """The frames PyAV decodes from a (possibly cut) fMP4 byte stream."""
    out = []
    try:
        with av.open(io.BytesIO(data), format="mp4") as f:
            for frame in f.decode(video=0):
                out.append(frame.to_ndarray(format="bgr24"))
    except (av.error.InvalidDataError, av.error.EOFError):
        pass  # the last fragment may be cut
    return out


def coloured(frame: np.ndarray, bgr, tolerance: int = 45) -> int:
    """How many pixels of ``frame`` are within ``tolerance`` of colour ``bgr``."""
    return int((np.abs(frame.astype(np.int16) - np.array(bgr, np.int16)) <= tolerance).all(axis=2).sum())


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(60)


def test_simple_det_classify_visualize(tmp_path, clip):
    port = free_port()
    proc = run_app("simple_det_classify", "video_visualize.toml", {"port": port, "allow_dirs": [str(clip.parent)]},
                   tmp_path)
    try:
        frames = watch(f"http://127.0.0.1:{port}", clip)
        assert len(frames) >= 40 and frames[0].shape == (360, 640, 3)
        assert sum(coloured(f, GREEN) > 500 for f in frames) >= 30  # the cat's box and label
        msgs = requests.get(f"http://127.0.0.1:{port}/get_msgs/0", timeout=10).json()
        assert msgs and all(json.loads(m)["stream"] == 0 for m in msgs)  # the messages are still JSON, not frames
    finally:
        stop(proc)


def test_electric_bicycle_visualize(tmp_path, clip):
    port = free_port()
    proc = run_app("electric_bicycle", "video_visualize.toml", {"port": port, "allow_dirs": [str(clip.parent)],
                                                                 "redis_port": free_port()}, tmp_path)
    try:
        frames = watch(f"http://127.0.0.1:{port}", clip)
        assert len(frames) >= 40
        assert sum(coloured(f, GREEN) > 500 for f in frames) >= 30  # a cat is no e-bike: a green track box
    finally:
        stop(proc)


def register_cat(port: int, name: str) -> None:
    """Store the clip's cat under ``name`` as cat_finder's registration does (Detect, BestBox, Reid, save)."""
    from megflow_mp.models import Detector, Embedder
    from plugins.cat_finder.crops import crop, quality
    from plugins.cat_finder.features import FeatureStore

    photo = load_image()
    cats = [d for d in Detector(str(ROOT / "models/yolox_nano.onnx"), tsize=416).detect(photo) if d.label == "cat"]
    best = max(cats, key=lambda d: quality(d.box, d.score))
    feature = Embedder(str(ROOT / "models/mobilenet_v2_1.0_224_feat.onnx")).embed(crop(photo, best.box))[0]
    FeatureStore(port=port).save(name, feature)


def test_cat_finder_visualize_names_the_registered_cat(tmp_path, clip, redis_server):  # noqa: F811
    register_cat(redis_server.port, "tom")
    port = free_port()
    proc = run_app("cat_finder", "video_visualize.toml", {"port": port, "allow_dirs": [str(clip.parent)],
                                                           "redis_port": redis_server.port}, tmp_path)
    try:
        frames = watch(f"http://127.0.0.1:{port}", clip, frames=60)
        assert len(frames) >= 60
        assert sum(coloured(f, GREEN) > 500 for f in frames) >= 30  # boxed in green: named as tom
    finally:
        stop(proc)
