"""Live view end to end: a VideoServer app whose streams go Stamp -> Visualize, watched by headless
chromium (the page's <video> over Media Source Extensions) and by plain HTTP clients.

Stamp (tests/support/liveview.py) draws a green box and the send time as a bar code on every frame;
the page's frames are read back from a canvas. Latency is measured by the benchmark, not asserted here.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import urllib.parse

import pytest
import requests

from tests.integration.conftest import start_cli, write_app
from tests.support import liveview
from tests.support.browser import Browser
from tests.support.clips import make_clip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip720(tmp_path_factory):
    """20 s of 1280x720 at 30 fps (the server paces it: realtime = true)."""
    return make_clip(tmp_path_factory.mktemp("live") / "clip720.mp4", frames=600, size=(1280, 720), fps=30, gop=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_app(tmp_path, clip720):
    """Start the app (``noise``, extra Visualize args), start the clip as stream 0; yield the base URL."""
    procs = []

    def start(noise: bool = False, visualize: str = "") -> str:
        port = free_port()
        toml = liveview.app_toml(port, str(clip720.parent), noise=noise, visualize=visualize)
        app = write_app(tmp_path, "liveapp", {"liveapp.toml": toml, "nodes.py": liveview.STAMP_NODE})
        proc = start_cli("run", "-p", app)
        procs.append(proc)
        for line in iter(proc.stderr.readline, ""):
            if "listening on" in line:
                break
        else:
            raise AssertionError("server did not start: " + proc.communicate()[1])
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        reply = requests.post(f"{base}/start/{urllib.parse.quote(str(clip720), safe='')}", timeout=30)
        assert reply.text == "start stream whose id is 0"
        return base

    yield start
    for proc in procs:
        proc.terminate()
        proc.communicate(timeout=60)


def stats(base: str) -> dict:
    return requests.get(f"{base}/view/0/stats", timeout=10).json()


def wait_for(check, timeout: float = 20, what: str = "condition"):
    """Poll ``check()`` (a server counter) until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def fragments(data: bytes) -> dict[int, bytes]:
    """``{sequence number: moof+mdat bytes}`` of the complete fragments in an fMP4 byte stream."""
    out, pos, moof_at, seq = {}, 0, None, None
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + size > len(data):
            break
        if kind == b"moof":
            moof_at, seq = pos, struct.unpack(">I", data[pos + 20:pos + 24])[0]  # moof > mfhd > sequence
        elif kind == b"mdat" and moof_at is not None:
            out[seq] = data[moof_at:pos + size]
        pos += size
    return out


class Reader(threading.Thread):
    """An HTTP viewer of /view/0/live.mp4 that keeps every byte it got."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.response = requests.get(f"{base}/view/0/live.mp4", stream=True, timeout=30)
        self.data = bytearray()
        self.stop = threading.Event()
        self.start()

    def run(self):
        try:
            for chunk in self.response.iter_content(chunk_size=None):
                self.data += chunk
        except Exception:  # noqa: BLE001 - close() pulls the connection away under the read
            if not self.stop.is_set():
                raise

    def close(self):
        """Go away like a closed tab: the connection is dropped."""
        self.stop.set()
        self.response.close()
        self.join(10)


def test_the_page_plays_the_annotated_stream_in_chromium(live_app):
    base = live_app()
    index = requests.get(f"{base}/view", timeout=10)
    assert '<a href="/view/0">stream 0</a>' in index.text and "clip720.mp4" in index.text
    assert requests.get(f"{base}/view/7", timeout=10).status_code == 404
    with Browser() as browser:
        assert browser.evaluate("MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.42c01f\"')")
        browser.open(f"{base}/view/0")
        first = liveview.probe(browser, 10)
        later = liveview.probe(browser, 30)
    assert later[-1]["decoded"] > first[-1]["decoded"] >= 10  # getVideoPlaybackQuality(): it keeps playing
    frames = first + later
    assert all((f["width"], f["height"]) == (1280, 720) for f in frames)
    for f in frames:  # the box Stamp drew in pure green (BGR 0,255,0) is where it was drawn
        r, g, b = f["box"]
        assert g > 220 and r < 40 and b < 40, f["box"]
    stamps = [f["stamp"] for f in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) > 30  # the bar codes read back: send times, in order
    info = stats(base)
    assert info["codecs"].startswith("avc1.") and info["size"] == [1280, 720]


def test_no_viewer_no_encoding_and_two_viewers_share_one(live_app):
    base = live_app()
    wait_for(lambda: stats(base)["frames_in"] >= 30, what="frames reaching the channel")
    idle = stats(base)
    assert idle["frames_encoded"] == 0 and not idle["encoding"] and idle["viewers"] == 0

    one, two = Reader(base), Reader(base)
    wait_for(lambda: len(fragments(bytes(one.data))) > 40 and len(fragments(bytes(two.data))) > 40,
             what="fragments at both viewers")
    watching = stats(base)
    assert watching["viewers"] == 2 and watching["encoding"]
    a, b = fragments(bytes(one.data)), fragments(bytes(two.data))
    common = sorted(set(a) & set(b))
    assert len(common) > 30 and all(a[s] == b[s] for s in common)  # the same encoded bytes: one encoding
    for reader in (one, two):
        assert bytes(reader.data[4:8]) == b"ftyp"  # each starts with the init segment ...
        first = min(fragments(bytes(reader.data)))
        flags = fragments(bytes(reader.data))[first]
        assert b"trun" in flags and first >= 1  # ... then fragments (checked decodable in test_live_encode)

    for reader in (one, two):
        reader.close()
    wait_for(lambda: not stats(base)["encoding"], what="the encoder to stop with the last viewer")
    gone = stats(base)
    assert gone["viewers"] == 0
    time_left = wait_for(lambda: stats(base)["frames_in"] > gone["frames_in"] + 15, what="more frames")
    assert time_left and stats(base)["frames_encoded"] == gone["frames_encoded"]  # no viewer: nothing encoded


def test_a_stalled_viewer_is_dropped_and_the_others_keep_up(live_app):
    base = live_app(noise=True, visualize="viewer_queue = 262144")
    host, port = base.split("//")[1].split(":")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((host, int(port)))
    stalled.sendall(b"GET /view/0/live.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
    wait_for(lambda: stats(base)["viewers"] == 1, what="the stalled viewer")
    reader = Reader(base)
    try:
        info = wait_for(lambda: (s := stats(base))["viewers_dropped"] >= 1 and s, timeout=60,
                        what="the stalled viewer to be dropped")
        assert info["viewer_skips"] > 0
        before, got = stats(base)["frames_in"], len(fragments(bytes(reader.data)))
        wait_for(lambda: stats(base)["frames_in"] >= before + 60, what="the stream to go on")
        assert len(fragments(bytes(reader.data))) >= got + 30  # the reading viewer still gets the frames
        assert stats(base)["viewers"] == 1
    finally:
        reader.close()
        stalled.close()
