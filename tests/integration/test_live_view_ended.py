"""The live view of a stream that ended: /view/{id} and its live.mp4 answer 410 (404 for an id the
server does not know), and the page in headless chromium says "stream N has ended" and stops asking."""

from __future__ import annotations

import json
import socket
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

# every fetch the page makes, with its answer's status (0: no answer), recorded before the page's scripts run
COUNT_FETCHES = """
window.__fetches = [];
(function () {
  var real = window.fetch.bind(window);
  window.fetch = function (url, options) {
    var entry = { url: String(url), status: null, at: performance.now() };
    window.__fetches.push(entry);
    return real(url, options).then(function (r) { entry.status = r.status; return r; },
                                    function (e) { entry.status = 0; throw e; });
  };
})();
"""

WAIT_ENDED = """
(async (ms) => {
  const deadline = performance.now() + ms;
  const status = () => document.getElementById("status");
  while (!status() || status().getAttribute("data-state") !== "ended") {
    if (performance.now() > deadline) throw new Error("not ended; page says: " + document.body.innerText);
    await new Promise(r => setTimeout(r, 100));
  }
  return { text: status().textContent, fetches: window.__fetches || [],
           played: (document.querySelector("video") || {}).currentTime || 0 };
})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ended_app(tmp_path):
    """A VideoServer app (Stamp -> Visualize per stream) playing a 4 s clip as stream 0, paced."""
    clip = make_clip(tmp_path / "clips" / "short.mp4", frames=100, size=(640, 360), fps=25, gop=25)
    port = free_port()
    app = write_app(tmp_path, "endedapp", {"endedapp.toml": liveview.app_toml(port, str(clip.parent)),
                                           "nodes.py": liveview.STAMP_NODE})
    proc = start_cli("run", "-p", app)
    for line in iter(proc.stderr.readline, ""):
        if "listening on" in line:
            break
    else:
        raise AssertionError("server did not start: " + proc.communicate()[1])
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    yield base, clip
    proc.terminate()
    proc.communicate(timeout=60)


def state(base: str, sid=0) -> str:
    return next(s["state"] for s in requests.get(f"{base}/list", timeout=10).json() if s["id"] == sid)


def test_the_page_of_an_ended_stream_says_so_and_stops_asking(ended_app):
    base, clip = ended_app
    assert requests.get(f"{base}/view/0", timeout=10).status_code == 404  # no stream yet
    reply = requests.post(f"{base}/start/{urllib.parse.quote(str(clip), safe='')}", timeout=30)
    assert reply.text == "start stream whose id is 0"
    with Browser() as browser:
        browser.call("Page.enable")
        browser.call("Page.addScriptToEvaluateOnNewDocument", source=COUNT_FETCHES)
        browser.open(f"{base}/view/0")
        assert state(base) == "running"  # the page was opened on a live stream
        seen = browser.evaluate(f"{WAIT_ENDED}(30000)", timeout=40)
        assert seen["text"] == "stream 0 has ended"
        assert state(base) == "finished"
        assert seen["played"] > 0.5  # it played before it ended
        live = [f for f in seen["fetches"] if f["url"].endswith("/view/0/live.mp4")]
        assert live[0]["status"] == 200 and live[-1]["status"] == 410, live
        assert len(live) == len(seen["fetches"])
        time.sleep(5)  # longer than any retry delay of the player
        after = browser.evaluate("window.__fetches")
        assert len(after) == len(seen["fetches"]), after  # no request after the ended message

        # the page opened after the end: 410, the message, no player and no request
        browser.open(f"{base}/view/0")
        seen = browser.evaluate(f"{WAIT_ENDED}(10000)", timeout=20)
        assert seen["text"] == "stream 0 has ended" and seen["fetches"] == []
        time.sleep(3)
        assert browser.evaluate("window.__fetches") == []

    page = requests.get(f"{base}/view/0", timeout=10)
    assert page.status_code == 410 and "stream 0 has ended" in page.text
    assert page.headers["content-type"].startswith("text/html")
    live = requests.get(f"{base}/view/0/live.mp4", timeout=10)
    assert live.status_code == 410 and live.json() == {"detail": "stream 0 has ended"}
    for path in ("/view/7", "/view/7/live.mp4", "/view/nope/live.mp4"):
        assert requests.get(base + path, timeout=10).status_code == 404, path
    assert requests.get(f"{base}/view/0/stats", timeout=10).json()["ended"] is True  # counters stay readable
    spec = requests.get(f"{base}/openapi.json", timeout=10).json()["paths"]
    assert "410" in spec["/view/{sid}"]["get"]["responses"]
    assert "410" in spec["/view/{sid}/live.mp4"]["get"]["responses"]
    json.dumps(spec)
