"""cat_finder: cats registered through a real ImageServer (or ImageInput) into a real redis-server, then
the cat fence on real H.264 clips through a real VideoServer (or VideoInput), with the real YOLOX-nano
and MobileNetV2 models in both formats; the shaper and the redis search also run alone, in-process.

Clips: a photo sliding out of a 640x360 frame (``make_clip(motion="exit")``). ``images/cat.bmp`` and
``images/cat_720p.jpg`` show the same cat; ``coco/000000001675.jpg`` and ``coco/000000004795.jpg`` two
other cats (the embedding tells all of these apart from the first one, see plugins/cat_finder/README.md).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.integration.conftest import ROOT, cli, env, free_port
from tests.support.clips import data_dir, load_image, make_clip, render_frames
from tests.support.fixtures import redis_server  # noqa: F401
from tests.support.redis import RedisServer

from megflow_mp import Envelope
from megflow_mp.models import Detector, Embedder, cosine
from megflow_mp.plugins import load_registry
from megflow_mp.testing import run_node

DATA = data_dir()  # ../shared/data, or under $MEGFLOW_MP_SHARED
CONFIGS = ROOT / "configs" / "cat_finder"
PLUGINS = ROOT / "plugins" / "cat_finder"
MODELS = {
    "onnx": ("models/yolox_nano.onnx", "models/mobilenet_v2_1.0_224_feat.onnx"),
    "mge": ("models/mge/yolox_nano.mge", "models/mge/mobilenet_v2_1.0_224_feat.mge"),
}
TOM = "images/cat.bmp"              # registration photo of the cat "tom"
TOM_CLIP = "images/cat_720p.jpg"    # another photo of tom: the clip of him leaving
KITTY = "coco/000000001675.jpg"     # a second registered cat
STRANGER = "coco/000000004795.jpg"  # a cat nobody registered
NOTIFY_KEY = "notification.cat_finder"



@pytest.fixture(autouse=True)
def private_spool(tmp_path, monkeypatch):
    """Writes spooled while redis is down go under the test's own directory (apps inherit it)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


# -- helpers ------------------------------------------------------------------------------------------------
class App:
    """A running ``megflow-mp run`` whose output (stdout and stderr together) is read by a thread."""

    def __init__(self, config: str, variables: dict, tmp_path: Path):
        vars_file = tmp_path / f"{config}_vars.toml"
        vars_file.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in variables.items()))
        command = cli("run", "-c", CONFIGS / f"{config}.toml", "-p", PLUGINS, "--dynamic", vars_file)
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(),
                                     cwd=ROOT)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    @property
    def log(self) -> str:
        with self.cond:
            return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        """The first output line matching ``pattern`` (a regex), waiting for it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(f"{pattern!r} not in the output:\n{''.join(self.lines)[-3000:]}")
                self.cond.wait(min(left, 0.5))

    def url(self) -> str:
        return self.wait_for(r"listening on (\S+)").group(1)

    def stop(self) -> None:
        """Ctrl-C; the app must exit 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.join()

    def join(self, timeout: float = 60) -> None:
        """Wait for the app to end by itself (test-mode inputs end the run); it must exit 0."""
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.reader.join(10)
        assert self.proc.returncode == 0, self.log[-3000:]


def app_vars(redis, fmt: str, **extra) -> dict:
    det, reid = MODELS[fmt]
    return {"redis_port": redis.port, "det_model": det, "reid_model": reid, **extra}


def register(url: str, name: str, photo: str) -> dict:
    """POST a photo as curl does (raw body, Content-Type image/*); the JSON reply."""
    r = requests.post(f"{url}/analyze/{name}", data=(DATA / photo).read_bytes(), headers={"Content-Type": "image/*"},
                      timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    return r.json()


def start_stream(url: str, clip: Path) -> int:
    r = requests.post(f"{url}/start/{requests.utils.quote(str(clip), safe='')}", timeout=30)
    assert r.status_code == 200, r.text
    return int(r.text.rsplit(" ", 1)[1])


def take_msgs(url: str, sid: int) -> list[dict]:
    r = requests.get(f"{url}/get_msgs/{sid}", timeout=10)
    assert r.status_code == 200, r.text
    return [json.loads(m) for m in r.json()]


def notifications(redis) -> list[dict]:
    return [json.loads(m) for m in redis.client().lrange(NOTIFY_KEY, 0, -1)]


def wait_until(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def exit_clip(tmp_path: Path, photo: str, name: str) -> Path:
    """25 frames (1 s) of ``photo`` sliding out of the frame on the right."""
    return make_clip(tmp_path / f"{name}.mp4", frames=25, motion="exit", image=photo)


DELIVERED = "notification.cat_finder.delivered"  # the ids of the spooled writes already applied


def stored_keys(redis_server) -> list[str]:
    """Every key in the database but the set of delivered write ids, sorted."""
    return sorted(k for k in redis_server.client().keys("*") if k != DELIVERED)


def stored_feature(redis, name: str) -> np.ndarray:
    from cat_finder.features import decode  # importable once load_registry ran (the plugins fixture)

    return decode(redis.client().get(f"feature.{name}"))


# -- the whole app, through the real servers -----------------------------------------------------------------
@pytest.mark.slow
def test_registration_through_the_image_server(tmp_path, redis_server, plugins):  # noqa: F811
    app = App("image_cpu", app_vars(redis_server, "onnx", port=free_port()), tmp_path)
    try:
        url = app.url()
        reply = register(url, "tom", TOM)
        assert reply["name"] == "tom" and reply["key"] == "feature.tom" and reply["score"] > 0.5
        x0, y0, x1, y1 = reply["box"]
        h, w = load_image(TOM).shape[:2]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and (x1 - x0) * (y1 - y0) > 0.3 * w * h  # the cat fills it
        first = stored_feature(redis_server, "tom")
        assert first.shape == (1280,) and abs(np.linalg.norm(first) - 1) < 1e-4

        refused = register(url, "rex", "images/pets.jpg")  # a dog
        assert set(refused) == {"name", "error"} and refused["name"] == "rex"
        assert refused["error"].startswith("no cat in the image") and "dog" in refused["error"]
        assert stored_keys(redis_server) == ["feature.tom"]
        assert redis_server.client().scard(DELIVERED) == 1  # the one registration, written once by id

        assert register(url, "tom", TOM_CLIP)["key"] == "feature.tom"  # registering again replaces
        second = stored_feature(redis_server, "tom")
        assert stored_keys(redis_server) == ["feature.tom"]
        assert redis_server.client().scard(DELIVERED) == 2
        assert not np.allclose(first, second) and 0.9 < cosine(first, second) < 0.99  # same cat, other photo
    finally:
        app.stop()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "mge"])
def test_the_fence_through_the_video_server(tmp_path, redis_server, plugins, fmt):  # noqa: F811
    tom_clip, stranger_clip = exit_clip(tmp_path, TOM_CLIP, "tom"), exit_clip(tmp_path, STRANGER, "stranger")
    video = App("video_cpu", app_vars(redis_server, fmt, port=free_port(), allow_dirs=[str(tmp_path)]), tmp_path)
    image = App("image_cpu", app_vars(redis_server, fmt, port=free_port()), tmp_path)
    try:
        vurl, iurl = video.url(), image.url()
        # before registration: tom leaves, nobody is notified
        before = start_stream(vurl, tom_clip)
        video.wait_for(rf"stream {before} track \d+ .*: no cat is registered")
        # registered while the fence runs: found at the next search
        assert register(iurl, "tom", TOM)["key"] == "feature.tom"
        assert register(iurl, "kitty", KITTY)["key"] == "feature.kitty"
        sid, other = start_stream(vurl, tom_clip), start_stream(vurl, stranger_clip)
        video.wait_for(rf"stream {sid} track \d+ .*: tom left the fence")
        video.wait_for(rf"stream {other} track \d+ .*: no registered cat \(closest")
        msgs = wait_until(lambda: take_msgs(vurl, sid), f"the message of stream {sid}")
        wait_until(lambda: notifications(redis_server), "the notification in redis")
        assert take_msgs(vurl, before) == [] and take_msgs(vurl, other) == []
    finally:
        video.stop()
        image.stop()
    assert len(msgs) == 1
    note = msgs[0]
    assert note["stream"] == sid and note["name"] == "tom" and note["message"] == "tom left the fence"
    assert 0.7 <= note["similarity"] <= 1 and note["track"] == 0
    assert 0 == note["first_frame"] <= note["best_frame"] <= note["last_frame"] < 25
    assert notifications(redis_server) == [note]  # exactly one: none for stream `before` nor `other`
    assert video.log.count("left the fence") == 1


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "mge"])
def test_the_fence_in_pipeline_test_mode(tmp_path, redis_server, plugins, fmt):  # noqa: F811
    cats = tmp_path / "cats"
    cats.mkdir()
    for name, photo in (("tom", TOM), ("kitty", KITTY), ("rex", "images/pets.jpg")):
        shutil.copy(DATA / photo, cats / f"{name}{Path(photo).suffix}")
    run = App("image_test", app_vars(redis_server, fmt, cats_dir=str(cats)), tmp_path)
    run.join()  # ImageInput ends the run when every photo has its reply
    replies = {m.group(1): json.loads(m.group(2)) for m in re.finditer(r"INFO (\w+): (\{.*\})", run.log)}
    assert replies["tom"]["key"] == "feature.tom" and replies["kitty"]["key"] == "feature.kitty"
    assert replies["rex"]["error"].startswith("no cat in the image")
    assert stored_keys(redis_server) == ["feature.kitty", "feature.tom"]

    clips = [exit_clip(tmp_path, TOM_CLIP, "tom"), exit_clip(tmp_path, STRANGER, "stranger")]
    run = App("video_test", app_vars(redis_server, fmt, videos=[str(c) for c in clips]), tmp_path)
    run.join()  # VideoInput ends the run when every stream has ended
    logged = [(int(m.group(1)), json.loads(m.group(2))) for m in re.finditer(r"INFO stream (\d+): (\{.*\})", run.log)]
    assert len(logged) == 1, run.log
    sid, note = logged[0]
    assert sid == note["stream"] == 0 and note["name"] == "tom" and note["similarity"] >= 0.7
    assert re.search(r"stream 1 track \d+ .*: no registered cat", run.log), run.log
    assert notifications(redis_server) == [note]


@pytest.mark.slow
def test_redis_unreachable_is_a_clear_error_and_the_apps_go_on(tmp_path, plugins):
    dead = {"redis_port": free_port(), "det_model": MODELS["onnx"][0], "reid_model": MODELS["onnx"][1]}
    cats = tmp_path / "cats"
    cats.mkdir()
    shutil.copy(DATA / TOM, cats / "tom.bmp")
    run = App("image_test", {**dead, "cats_dir": str(cats)}, tmp_path)
    run.join()
    reply = json.loads(run.wait_for(r"INFO tom: (\{.*\})").group(1))
    assert reply["name"] == "tom" and f"redis 127.0.0.1:{dead['redis_port']}/0: cannot store" in reply["held"]
    assert re.search(r"ERROR .*cannot store 'feature.tom': ConnectionError", run.log), run.log

    run = App("video_test", {**dead, "videos": [str(exit_clip(tmp_path, TOM_CLIP, "tom"))]}, tmp_path)
    run.join()  # the stream ran to its end
    assert re.search(r"ERROR .*cannot list the keys feature\.\*: ConnectionError.*searching the 0 cats", run.log)
    assert re.search(r"stream 0 track 0 .*: no cat is registered", run.log), run.log


# -- single nodes, in-process ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plugins():
    """The app's registry (imports plugins/cat_finder as the package ``cat_finder``)."""
    return load_registry(PLUGINS)


@pytest.fixture(scope="module")
def models():
    det, reid = MODELS["onnx"]
    return Detector(ROOT / det), Embedder(ROOT / reid)


def best_cat_feature(models, img: np.ndarray) -> np.ndarray:
    detector, embedder = models
    cat = max((d for d in detector.detect(img) if d.label == "cat"), key=lambda d: d.score)
    x0, y0, x1, y1 = map(int, cat.box)
    return embedder.embed(img[y0:y1, x0:x1])[0]


def track_msg(frame_index: int, frame, seen=(), ended=()) -> Envelope:
    msg = {"frame": frame_index, "seen": [{"id": i, "box": b, "score": s} for i, b, s in seen],
           "ended": [{"id": i, "first": f, "last": la, "hits": h} for i, f, la, h in ended]}
    if frame is not None:
        msg["data"] = frame
    return Envelope.pack(msg, info={"from_addr": 7, "partial_id": frame_index})


def test_shaper_sends_the_best_view_of_each_track_once_it_ends(plugins):
    frame = np.arange(360 * 640 * 3, dtype=np.uint32).reshape(360, 640, 3).astype(np.uint8)
    small, large, blurry = (10, 20, 50, 60), (100, 50, 300, 200), (90, 40, 310, 210)
    out = run_node("Shaper", registry=plugins, args={"min_hits": 2}, inputs={"inp": [
        track_msg(0, frame, seen=[(0, small, 0.9), (1, (400, 10, 420, 30), 0.8)]),
        track_msg(3, frame, seen=[(0, large, 0.8)], ended=[(1, 0, 0, 1)]),  # track 1: one hit, forgotten
        track_msg(6, frame, seen=[(0, blurry, 0.3)]),                      # larger, far less sure: not better
        track_msg(9, None, ended=[(0, 0, 6, 3)]),                          # end of the stream
    ]})["out"]
    assert len(out) == 1
    view = out[0].msg
    assert view["track"] == 0 and (view["first_frame"], view["last_frame"], view["hits"]) == (0, 6, 3)
    assert view["best_frame"] == 3 and view["box"] == list(map(float, large)) and view["score"] == 0.8
    assert np.array_equal(view["crop"], frame[50:200, 100:300])
    assert out[0].from_addr == 7


def test_detect_track_shaper_on_a_real_clip_give_one_view_of_the_leaving_cat(plugins):
    frames = list(render_frames(25, image=TOM_CLIP, motion="exit"))
    args = {"path": str(ROOT / MODELS["onnx"][0]), "labels": ["cat"], "interval": 3}
    detected = run_node("Detect", registry=plugins, args=args, inputs={"inp": [
        Envelope.pack({"data": f}, info={"from_addr": 0, "partial_id": i}) for i, f in enumerate(frames)]})["out"]
    assert [e.partial_id for e in detected] == list(range(0, 25, 3))
    assert all(d.label == "cat" for e in detected for d in e.msg["items"])
    tracked = run_node("Track", registry=plugins, args={"max_missed": 3}, inputs={"inp": detected}, timeout=30)["out"]
    views = run_node("Shaper", registry=plugins, args={"min_hits": 2}, inputs={"inp": tracked})["out"]
    assert len(views) == 1
    view = views[0].msg
    assert view["track"] == 0 and view["first_frame"] == 0 and view["hits"] >= 4
    assert view["crop"].shape[0] > 100 and view["crop"].shape[1] > 100


def test_search_names_the_registered_cat_and_ignores_others(plugins, models, redis_server):  # noqa: F811
    args = {"port": redis_server.port, "prefix": "feature."}
    saved = run_node("RedisProxy", registry=plugins, args={**args, "mode": "save"}, inputs={"inp": [
        {"extra_data": name, "feature": best_cat_feature(models, load_image(photo)), "box": (1, 2, 3, 4),
         "score": 0.9} for name, photo in (("tom", TOM), ("kitty", KITTY))]})["out"]
    assert [json.loads(e.msg)["key"] for e in saved] == ["feature.tom", "feature.kitty"]

    def ended(photo, track):
        return Envelope.pack({"feature": best_cat_feature(models, load_image(photo)), "track": track,
                              "first_frame": 0, "last_frame": 12, "best_frame": 6, "box": [1.0, 2.0, 3.0, 4.0],
                              "score": 0.8}, info={"from_addr": 3})

    out = run_node("RedisProxy", registry=plugins, args={**args, "mode": "search", "threshold": 0.7},
                   inputs={"inp": [ended(TOM_CLIP, 0), ended(STRANGER, 1)]})["out"]
    assert len(out) == 1 and out[0].from_addr == 3
    note = json.loads(out[0].msg)
    assert note["name"] == "tom" and note["stream"] == 3 and note["track"] == 0 and note["similarity"] > 0.9
    assert notifications(redis_server) == [note]


def test_search_keeps_its_cats_while_redis_is_away_then_reconnects(plugins, models, redis_server, caplog):  # noqa: F811
    from cat_finder.features import encode
    from cat_finder.redis_proxy import RedisProxy

    redis_server.client().set("feature.tom", encode(best_cat_feature(models, load_image(TOM))))
    redis_server.client().set("feature.junk", "not a feature!")
    proxy = RedisProxy("proxy", {"mode": "search", "port": redis_server.port, "timeout": 0.5})

    def query(photo):
        return {"feature": best_cat_feature(models, load_image(photo)), "track": 4, "first_frame": 0,
                "last_frame": 9, "best_frame": 3, "box": [0.0, 0.0, 1.0, 1.0]}

    with caplog.at_level(logging.INFO):
        assert proxy.search(query(TOM_CLIP), 0)["name"] == "tom"
        assert "key 'feature.junk' is not a cat feature" in caplog.text  # skipped, the others still load
        redis_server.stop()
        caplog.clear()
        held = proxy.search(query(TOM_CLIP), 0)
        assert held["name"] == "tom"  # from the features loaded before
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(f"redis 127.0.0.1:{redis_server.port}/0: cannot list the keys" in e and "searching the 1 cats" in e
                   for e in errors), errors
        assert any("cannot push to 'notification.cat_finder'" in e for e in errors), errors
        assert proxy.search(query(KITTY), 0) is None
        with RedisServer(port=redis_server.port) as back:  # the same server back, with another cat
            back.client().set("feature.kitty", encode(best_cat_feature(models, load_image(KITTY))))
            note = proxy.search(query(KITTY), 0)
            # the notification spooled while redis was away is written first, once
            assert note["name"] == "kitty" and notifications(back) == [held, note]


def test_best_box_explains_a_photo_without_a_cat(plugins, models):
    detector, _ = models
    photo = load_image("images/parrot.jpg")
    out = run_node("BestBox", registry=plugins, inputs={"inp": [
        {"data": photo, "extra_data": "polly", "items": detector.detect(photo)},
        {"data": photo, "extra_data": "", "items": detector.detect(photo)}]})["out"]
    assert out[0].msg["error"].startswith("no cat in the image (seen: ") and "crop" not in out[0].msg
    assert out[1].msg["error"].startswith("no name given")


def test_bad_node_args_are_clear_errors(plugins):
    with pytest.raises(ValueError, match="mode must be one of"):
        run_node("RedisProxy", registry=plugins, args={"mode": "find"})
    with pytest.raises(ValueError, match="interval must be >= 1"):
        run_node("Detect", registry=plugins, args={"path": str(ROOT / MODELS["onnx"][0]), "interval": 0})
    with pytest.raises(ValueError, match="unknown labels"):
        run_node("Detect", registry=plugins, args={"path": str(ROOT / MODELS["onnx"][0]), "labels": ["kitten"]})
    with pytest.raises(ValueError, match="not supported"):
        run_node("Shaper", registry=plugins, args={"mode": "FIRST"})
