"""Metrics and the live dashboard of running apps: ``/metrics`` scraped and parsed with
prometheus-client's own text parser, the ``--metrics-port`` server of a batch app, the series of an
ended stream going away, and the dashboard page in headless chromium.

Every wait is on a value read from the running app (a counter, a page element), with a timeout;
nothing is asserted about how fast anything happens.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import cli, env, free_port, write_app
from tests.support import liveview
from tests.support.browser import Browser
from tests.support.clips import make_clip

TICKER = '''
import os
from megflow import Envelope, register, sleep


@register(outputs=["out"])
class Ticker:
    """Sends {"i": i} every few ms until the file ``stop`` names exists."""

    def __init__(self, name, args):
        self.stop = args["stop"]

    def exec(self):
        i = 0
        while not os.path.exists(self.stop):
            self.out.send(Envelope.pack({"i": i}))
            i += 1
            sleep(2)
'''

BATCH_TOML = '''
main = "g"

[[graphs]]
name = "g"
connections = [
  {{ cap = 16, ports = ["source:out", "trans:inp"] }},
  {{ cap = 16, ports = ["trans:out", "sink:inp"] }},
]
nodes = [
  {{ name = "source", ty = "Ticker", stop = "{stop}" }},
  {{ name = "trans", ty = "Transform" }},
  {{ name = "sink", ty = "NoopConsumer" }},
]
'''


def run_dirs(pid: int) -> list[Path]:
    """The metrics directories of the run whose supervisor is ``pid`` (others may run meanwhile)."""
    out = []
    for d in Path(tempfile.gettempdir()).glob("megflow-mp-metrics-*"):
        try:
            if json.loads((d / "run.json").read_text())["pid"] == pid:
                out.append(d)
        except (OSError, ValueError, KeyError):
            pass
    return out


def scrape(base: str) -> dict:
    """``{(sample name, frozenset of labels): value}`` of ``base/metrics``."""
    reply = requests.get(f"{base}/metrics", timeout=10)
    reply.raise_for_status()
    out = {}
    for family in text_string_to_metric_families(reply.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: dict, name: str, **labels) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def has(samples: dict, name: str, **labels) -> bool:
    want = set(labels.items())
    return any(n == name and want <= ls for (n, ls) in samples)


def wait_for(check, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except requests.RequestException as exc:  # the server is not up yet
            value, last = None, exc
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def start(args: list, extra_env: dict | None = None) -> subprocess.Popen:
    e = env()
    e.update(extra_env or {})
    return subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.communicate(timeout=60)


def test_batch_app_metrics_port(tmp_path):
    """A graph without a front door, run with --metrics-port: counters per node move, exec time is
    sampled, process figures come from /proc, the dashboard is there; the run's directory goes."""
    stop_file = tmp_path / "stop"
    app = write_app(tmp_path, "ticker", {"ticker.toml": BATCH_TOML.format(stop=stop_file), "nodes.py": TICKER})
    port = free_port()
    proc = start(["run", "-p", app, "--metrics-port", port])
    base = f"http://127.0.0.1:{port}"
    try:
        # each process writes its snapshot once a second, so one scrape may show the sink's newer
        # counts next to the source's older ones: wait until every node's counter has moved
        moving = (("g/source", "megflow_node_envelopes_out_total"), ("g/trans", "megflow_node_envelopes_in_total"),
                  ("g/trans", "megflow_node_envelopes_out_total"), ("g/sink", "megflow_node_envelopes_in_total"))
        first = wait_for(lambda: (s := scrape(base)) and all(total(s, name, node=node) > 0 for node, name in moving)
                         and s, what="envelopes out of source, through trans, into sink")
        wait_for(lambda: total(scrape(base), "megflow_node_envelopes_in_total", node="g/trans")
                 > total(first, "megflow_node_envelopes_in_total", node="g/trans"), what="the counter to move")
        wait_for(lambda: total(scrape(base), "megflow_node_exec_seconds_count", node="g/trans") > 0,
                 what="a sampled exec time of trans")
        now = scrape(base)
        assert total(now, "megflow_process_resident_memory_bytes", node="supervisor") > 0
        assert total(now, "megflow_process_cpu_seconds_total", node="g/trans", replica="0") > 0
        assert total(now, "megflow_node_queue_capacity", node="g/trans") == 16
        assert has(now, "megflow_node_errors_total", node="g/trans")
        page = requests.get(f"{base}/dashboard", timeout=10)
        assert page.status_code == 200 and "dashboard.js" in page.text
        svg = requests.get(f"{base}/dashboard/graph.svg", timeout=30)
        assert svg.status_code == 200 and "<title>g/trans</title>" in svg.text
        mine = run_dirs(proc.pid)
        assert len(mine) == 1, "one run directory while the app runs"
    finally:
        stop_file.touch()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not mine[0].exists(), "the run directory was not removed"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """10 s of 320x240 at 30 fps (the server paces it: realtime = true)."""
    return make_clip(tmp_path_factory.mktemp("metrics") / "clip.mp4", frames=300, size=(320, 240), fps=30, gop=30)


@pytest.fixture
def video_app(tmp_path, clip):
    """A VideoServer app (Stamp -> Visualize per stream) with ended streams kept 3 s; yields its URL."""
    procs = []

    def launch() -> str:
        port = free_port()
        toml = liveview.app_toml(port, str(clip.parent))
        app = write_app(tmp_path, "metricsapp", {"metricsapp.toml": toml, "nodes.py": liveview.STAMP_NODE})
        proc = start(["run", "-p", app], {"MEGFLOW_MP_METRICS_RETENTION": "3"})
        procs.append(proc)
        for line in iter(proc.stderr.readline, ""):
            if "listening on" in line:
                break
        else:
            raise AssertionError("server did not start: " + proc.communicate()[1])
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        return f"http://127.0.0.1:{port}"

    yield launch
    for proc in procs:
        stop(proc)


def start_clip(base: str, clip: Path) -> None:
    reply = requests.post(f"{base}/start/{urllib.parse.quote(str(clip), safe='')}", timeout=30)
    assert reply.text == "start stream whose id is 0"


def test_front_door_and_stream_metrics(video_app, clip):
    """Requests by route and status, envelopes per node, stream frames; a stopped stream's series
    disappear after the retention (3 s here)."""
    base = video_app()
    start_clip(base, clip)
    assert requests.post(f"{base}/stop/99", timeout=10).status_code == 404
    stream = {"node": "main/source", "stream": "0"}
    first = wait_for(lambda: (s := scrape(base)) and total(s, "megflow_stream_frames_sent_total", **stream) > 0 and s,
                     what="frames sent into stream 0")
    wait_for(lambda: total(scrape(base), "megflow_stream_frames_decoded_total", **stream)
             > total(first, "megflow_stream_frames_decoded_total", **stream), what="more frames decoded")
    s = wait_for(lambda: (s := scrape(base)) and total(s, "megflow_node_envelopes_in_total", node="sub/view") > 0
                 and total(s, "megflow_node_envelopes_in_total", node="sub/stamp") > 0 and s,
                 what="frames at the Stamp and the Visualize node (each process's snapshot is up to 1 s old)")
    assert total(s, "megflow_node_envelopes_out_total", node="main/source") > 0
    assert total(s, "megflow_http_requests_total", route="/start/{url:anypath}", method="POST", status="200") == 1
    assert total(s, "megflow_http_requests_total", route="/stop/{sid}", method="POST", status="404") == 1
    assert total(s, "megflow_http_requests_total", route="/metrics", status="200") >= 1
    assert total(s, "megflow_http_request_seconds_count", route="/start/{url:anypath}") == 1
    assert total(s, "megflow_stream_state", state="running", **stream) == 1
    assert total(s, "megflow_stream_decode_seconds_total", **stream) > 0
    assert requests.post(f"{base}/stop/0", timeout=10).status_code == 200
    wait_for(lambda: not has(scrape(base), "megflow_stream_frames_decoded_total", **stream),
             what="the ended stream's series to go")
    gone = scrape(base)
    assert not any(dict(labels).get("stream") == "0" for _, labels in gone)
    assert total(gone, "megflow_node_envelopes_in_total", node="sub/stamp") > 0  # node series stay


JS_LABELS = """
(async () => {
  const deadline = performance.now() + %d;
  const read = () => {
    for (const g of document.querySelectorAll("#graph g.node")) {
      if (g.querySelector("title").textContent !== "sub/stamp") continue;
      const texts = g.querySelectorAll("text");
      return {label: texts[texts.length - 2].textContent, seen: Number(g.getAttribute("data-in") || 0),
              rate: Number(g.getAttribute("data-in-rate") || 0)};
    }
    return null;
  };
  while (performance.now() < deadline) {
    const got = read();
    if (got && got.seen > %s && got.rate > 0) return got;
    await new Promise(r => setTimeout(r, 100));
  }
  throw new Error("the label of sub/stamp did not move: " + JSON.stringify(read()));
})()
"""

JS_STREAM = """
(async () => {
  const deadline = performance.now() + 30000;
  while (performance.now() < deadline) {
    const row = document.querySelector('#streams tr[data-stream="0"]');
    const link = row && row.querySelector("a");
    if (link) return {href: link.getAttribute("href"), text: row.innerText};
    await new Promise(r => setTimeout(r, 100));
  }
  throw new Error("no row for stream 0: " + document.querySelector("#streams").innerText);
})()
"""


@pytest.mark.slow
def test_dashboard_in_chromium(video_app, clip):
    """The page loads the graph, its node labels show rates that move while the stream runs, and
    the streams table lists the running stream with a link to its live view."""
    base = video_app()
    start_clip(base, clip)
    with Browser() as browser:
        browser.open(f"{base}/dashboard")
        first = browser.evaluate(JS_LABELS % (30000, 0), timeout=40)
        assert "/s in" in first["label"], first
        later = browser.evaluate(JS_LABELS % (30000, first["seen"]), timeout=40)
        assert later["seen"] > first["seen"] and later["rate"] > 0
        assert later["label"] != "-" and not later["label"].startswith("0.0/s"), later
        row = browser.evaluate(JS_STREAM, timeout=40)
        assert row["href"].endswith(f":{urllib.parse.urlsplit(base).port}/view/0"), row
        assert "running" in row["text"] and "main/source" in row["text"], row


CRASH_ON_REQUEST = '''

@register(inputs=["inp"], outputs=["out"])
class CrashOnRequest:
    """Passes envelopes on; kills its own process once after the file ``crash`` appears."""

    def __init__(self, name, args):
        self.crash, self.marker = args["crash"], args["marker"]

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        if os.path.exists(self.crash) and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), 9)
        self.out.send(envelope)
'''


def test_restart_is_counted_and_counters_carry_on(tmp_path):
    """A replica killed and started again (restart = 1): restarts_total is 1 and its envelope
    counter goes on from what the killed process had reported."""
    stop_file, crash, marker = tmp_path / "stop", tmp_path / "crash", tmp_path / "crashed"
    toml = BATCH_TOML.format(stop=stop_file).replace(
        '{ name = "trans", ty = "Transform" }',
        f'{{ name = "trans", ty = "CrashOnRequest", restart = 1, crash = "{crash}", marker = "{marker}" }}')
    app = write_app(tmp_path, "crashy", {"crashy.toml": toml, "nodes.py": TICKER + CRASH_ON_REQUEST})
    port = free_port()
    proc = start(["run", "-p", app, "--metrics-port", port])
    base = f"http://127.0.0.1:{port}"
    trans = {"node": "g/trans", "replica": "0"}
    try:
        before = wait_for(lambda: total(scrape(base), "megflow_node_envelopes_in_total", **trans),
                          what="envelopes at trans")
        first = scrape(base)
        assert has(first, "megflow_node_restarts_total", **trans)
        assert total(first, "megflow_node_restarts_total", **trans) == 0
        crash.touch()
        wait_for(lambda: total(scrape(base), "megflow_node_restarts_total", **trans) == 1, what="the restart")
        after = wait_for(lambda: (n := total(scrape(base), "megflow_node_envelopes_in_total", **trans)) > before
                         and n, what="envelopes at the restarted trans")
        assert after > before and marker.exists()
    finally:
        stop_file.touch()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "restarting it (1 of 1)" in err
