"""Does a front door still do its job? One real request per server type, checked for its content."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import cv2
import numpy as np
import requests

from tests.reliability.servers import wait_until
from tests.support.clips import data_dir, make_clip

PHOTO = "images/cat_720p.jpg"
CLIP_FRAMES = 10


def photo_bytes() -> bytes:
    return (data_dir() / PHOTO).read_bytes()


def make_small_clip(folder: Path) -> Path:
    return make_clip(folder / "cat.mp4", frames=CLIP_FRAMES, size=(320, 192))


def image_answers(url: str) -> str | None:
    """None when ImageServer (graph: Flip) returns the photo upside down, else what is wrong."""
    body = photo_bytes()
    r = requests.post(f"{url}/analyze/check", data=body, headers={"Content-Type": "image/jpeg"}, timeout=60)
    if r.status_code != 200 or r.headers.get("content-type") != "image/jpeg":
        return f"status {r.status_code} {r.headers.get('content-type')}: {r.text[:200]}"
    got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    want = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)[::-1]
    if got is None or got.shape != want.shape:
        return f"reply is not the picture: {None if got is None else got.shape} vs {want.shape}"
    diff = float(np.abs(got.astype(np.int16) - want).mean())
    return None if diff < 8 else f"reply differs from the flipped photo by {diff:.1f} per pixel"


def bytes_answers(url: str) -> str | None:
    """None when BytesServer (graph: Reverse) returns the body reversed, else what is wrong."""
    body = bytes(range(256)) * 64
    r = requests.post(f"{url}/analyze/check", data=body, headers={"Content-Type": "application/octet-stream"},
                      timeout=60)
    if r.status_code != 200:
        return f"status {r.status_code}: {r.text[:200]}"
    return None if r.content == body[::-1] else f"reply of {len(r.content)} bytes is not the body reversed"


def video_answers(url: str, clip: Path, headers: dict | None = None) -> str | None:
    """None when VideoServer (subgraph: Lines) plays ``clip`` to the end with one message per frame
    in order, else what is wrong."""
    r = requests.post(f"{url}/start/{urllib.parse.quote(str(clip), safe='')}", timeout=60, headers=headers)
    if r.status_code != 200:
        return f"start: status {r.status_code}: {r.text[:200]}"
    sid = int(r.text.rsplit(" ", 1)[1])
    state = {}

    def ended():
        state.update(next(s for s in requests.get(f"{url}/list", timeout=30, headers=headers).json() if s["id"] == sid))
        return state["state"] in ("finished", "stopped", "error")

    if not wait_until(ended, 60):
        return f"stream {sid} did not end: {state}"
    msgs = []
    wait_until(lambda: msgs.extend(requests.get(f"{url}/get_msgs/{sid}", timeout=30, headers=headers).json())
               or len(msgs) >= CLIP_FRAMES, 30)
    frames = [json.loads(m)["frame"] for m in msgs]
    if state["state"] != "finished" or frames != list(range(CLIP_FRAMES)):
        return f"stream {sid} {state['state']} ({state.get('reason')}), frames {frames}"
    return None


def answers(server: str, url: str, clip: Path | None = None, headers: dict | None = None) -> str | None:
    """None when a real request is answered right (``headers``: an operator's token, VideoServer)."""
    if server == "ImageServer":
        return image_answers(url)
    if server == "BytesServer":
        return bytes_answers(url)
    return video_answers(url, clip, headers)
