"""A VideoServer's messages as JSON and live over Server-Sent Events (/events, /streams/{id}/events):
thousands of messages of streams on two replicas read by real SSE clients, resume with
Last-Event-ID, numbers that go on after a SIGKILL of the app, dict messages as objects in
/get_msgs, and Chromium's EventSource. Real clips, real processes."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.integration.conftest import drain, free_port, start_server, write_app
from tests.integration.test_streams_kept import _kill_app, stream, wait_for
from tests.support.browser import Browser
from tests.support.clips import make_clip
from tests.support.sse import SSE

FRAMES, FAN = 300, 4  # messages per stream: FRAMES * FAN

APP = """
main = "video"
[[graphs]]
name = "subgraph"
inputs = [{ name = "inp", cap = 16, ports = ["say:inp"] }]
outputs = [{ name = "out", cap = 64, ports = ["say:out"] }]
    [[graphs.nodes]]
    name = "say"
    ty = "Say"
[[graphs]]
name = "video"
connections = [
  { cap = 16, ports = ["server:out", "destination:inp"] },
  { cap = 64, ports = ["server:inp", "destination:out"] },
]
    [[graphs.nodes]]
    name = "server"
    ty = "VideoServer"
    {args}
    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""

NODES = f"""
import json
import os
from megflow import register

MARKS = os.path.join(os.path.dirname(__file__), "marks")

@register(inputs=["inp"], outputs=["out"])
class Say:  # {FAN} messages per frame: a dict (k even), a string holding JSON (k odd)
    def __init__(self, name, args): pass  # raises once on frame 20 of a stream named "r..."
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        mark = os.path.join(MARKS, str(e.from_addr))
        if str(e.from_addr).startswith("r") and e.partial_id == 20 and not os.path.exists(mark):
            os.makedirs(MARKS, exist_ok=True)
            open(mark, "w").close()
            raise ValueError("frame 20 is bad")
        for k in range({FAN}):
            body = {{"sid": e.from_addr, "frame": e.partial_id, "k": k, "text": "é ✓"}}
            self.out.send(e.repack(body if k % 2 == 0 else json.dumps(body)))
"""


def events_app(tmp_path: Path, **args) -> tuple[Path, Path]:
    clip = make_clip(tmp_path / "clips" / "clip.mp4", frames=FRAMES, size=(160, 96))
    lines = [f"port = {free_port()}", f'state_dir = "{tmp_path / "state"}"',
             f"allow_dirs = {json.dumps([str(clip.parent)])}"] + [f"{k} = {v}" for k, v in args.items()]
    app = write_app(tmp_path, "events", {"events.toml": APP.replace("{args}", "\n    ".join(lines)), "nodes.py": NODES})
    return app, clip


def start(url: str, clip: Path, sid: str) -> None:
    r = requests.post(f"{url}/streams", json={"url": str(clip), "id": sid}, timeout=30)
    assert r.status_code == 201, r.text


def body(sid: str, n: int) -> dict:
    """What Say sent as the stream's message number ``n``."""
    return {"sid": sid, "frame": n // FAN, "k": n % FAN, "text": "é ✓"}


def sent(sid: str, n: int):
    return body(sid, n) if n % 2 == 0 else json.dumps(body(sid, n))


def check_stream(messages: list[dict], sid: str, first_seq: int = 0) -> None:
    """Every message of one run of stream ``sid``, in order, numbered without a hole."""
    assert [m["seq"] for m in messages] == list(range(first_seq, first_seq + FRAMES * FAN))
    assert all(m["stream"] == sid and isinstance(m["ts"], float) for m in messages)
    assert [m["message"] for m in messages] == [sent(sid, n) for n in range(FRAMES * FAN)]
    assert all(a["ts"] <= b["ts"] for a, b in zip(messages, messages[1:]))


def test_consumers_get_every_message_of_streams_on_both_replicas_in_order_and_resume(tmp_path):
    app, clip = events_app(tmp_path, cloned=2, max_msgs=FRAMES * FAN)
    proc, url = start_server(app)
    total = 3 * FRAMES * FAN
    try:
        spec = requests.get(f"{url}/openapi.json", timeout=10).json()
        for path in ("/events", "/streams/{sid}/events"):
            ok = spec["paths"][path]["get"]["responses"]["200"]["content"]
            assert ok["text/event-stream"]["example"].startswith("retry: 2000\n\n"), ok
        assert requests.get(f"{url}/streams/nothing/events", timeout=10).status_code == 404
        bad = requests.get(f"{url}/events", headers={"Last-Event-ID": "abc"}, timeout=10)
        assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["detail"]
        # three consumers of every stream, subscribed before any stream starts
        first, second, leaving = SSE(f"{url}/events"), SSE(f"{url}/events"), SSE(f"{url}/events")
        assert first.status == 200 and first.content_type.startswith("text/event-stream")
        for sid in ("a", "b", "c"):
            start(url, clip, sid)
        replicas = {s["id"]: s["replica"] for s in requests.get(f"{url}/list", timeout=10).json()}
        assert {replicas["a"], replicas["b"], replicas["c"]} == {0, 1}  # streams on both replicas
        # one leaves after 1000 events, then comes back with the last id it has
        before = leaving.take(1000)
        leaving.close()
        with SSE(f"{url}/events", last_event_id=before[-1].id) as back:
            after = back.take(total - 1000)
        got = [first.take(total), second.take(total)]
        for events in got:
            assert {e.event for e in events} == {"message"}  # no gap
            ids = [int(e.id) for e in events]
            assert ids == list(range(ids[0], ids[0] + total))  # the cursor: one number over all streams
            for sid in ("a", "b", "c"):
                check_stream([m for m in (e.json() for e in events) if m["stream"] == sid], sid)
        assert [(e.id, e.data) for e in got[0]] == [(e.id, e.data) for e in got[1]]
        assert [(e.id, e.data) for e in before + after] == [(e.id, e.data) for e in got[0]]  # exactly the missing
        assert first.retry == 2000
        first.close()
        second.close()
        # one stream's events from everything kept (?last_event_id=-1), then resumed with the header
        with SSE(f"{url}/streams/b/events", last_event_id="-1", header=False) as sse:
            kept = sse.take(FRAMES * FAN)
        assert [e.id for e in kept] == [str(n) for n in range(FRAMES * FAN)]
        check_stream([e.json() for e in kept], "b")
        with SSE(f"{url}/streams/b/events", last_event_id="1000") as sse:
            rest = sse.take(FRAMES * FAN - 1001)
        assert [e.id for e in rest] == [str(n) for n in range(1001, FRAMES * FAN)]
        # /get_msgs, independent of the live consumers: strings byte for byte as sent, dicts as objects
        for sid in ("a", "b", "c"):
            r = requests.get(f"{url}/get_msgs/{sid}", timeout=10)
            expected = [sent(sid, n) for n in range(FRAMES * FAN)]
            assert r.json() == expected
            assert r.content == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
            assert requests.get(f"{url}/get_msgs/{sid}", timeout=10).json() == []
    finally:
        _, err = drain(proc)
    assert "JSON cannot hold" not in err and "not a string" not in err  # dicts need no warning


def test_numbers_go_on_after_a_sigkill_and_exactly_after_a_clean_stop(tmp_path):
    app, clip = events_app(tmp_path)
    proc, url = start_server(app)
    try:
        sse = SSE(f"{url}/events")
        start(url, clip, "a")
        seen = [e.json() for e in sse.take(500)]
        top_seq, top_id = max(m["seq"] for m in seen), 499
        assert [m["seq"] for m in seen] == list(range(500))
    finally:
        _kill_app(proc)  # while messages flow (or just after the file's end)
    proc, url = start_server(app)
    try:
        wait_for(lambda: requests.get(f"{url}/readyz", timeout=10).status_code == 200, what="ready")
        if requests.get(f"{url}/streams/a", timeout=10).status_code == 404:  # it had ended: forgotten
            start(url, clip, "a")
        with SSE(f"{url}/streams/a/events", last_event_id="-1") as sse:
            events = sse.take(FRAMES * FAN)
        gaps = [e.json() for e in events if e.event == "gap"]
        assert len(gaps) == 1 and gaps[0]["stream"] == "a" and gaps[0]["last_event_id"] == -1
        again = [e.json() for e in events if e.event == "message"]
        assert again[0]["seq"] > top_seq  # no number used twice
        check_stream(again, "a", again[0]["seq"])
        with SSE(f"{url}/events", last_event_id="-1") as sse:
            assert int(next(e for e in sse.take(1) if e.event == "message").id) > top_id
        last = again[-1]["seq"]  # every message of the stream is out: the clean stop writes what comes next
        wait_for(lambda: stream(url, "a")["state"] == "finished", what="a finished")
    finally:
        drain(proc)
    proc, url = start_server(app)
    try:
        start(url, clip, "a")
        with SSE(f"{url}/streams/a/events", last_event_id="-1") as sse:
            events = sse.take(FRAMES * FAN)
        assert events[0].event == "gap"  # the run before kept nothing here
        check_stream([e.json() for e in events[1:]], "a", last + 1)
    finally:
        drain(proc)
    numbers = json.loads((tmp_path / "state" / "video_server.seqs.json").read_text())
    assert numbers["format"] == "megflow-mp message numbers" and ["a", last + 1 + FRAMES * FAN] in numbers["streams"]


def test_chromium_eventsource_receives_a_streams_events(tmp_path):
    app, clip = events_app(tmp_path)
    proc, url = start_server(app)
    try:
        start(url, clip, "a")
        with Browser() as browser:
            browser.open(f"{url}/healthz")  # a page of the app's own origin
            got = browser.evaluate("""new Promise((resolve, reject) => {
                const got = [], gaps = [];
                const source = new EventSource('/streams/a/events?last_event_id=-1');
                source.addEventListener('gap', e => gaps.push(e.data));
                source.onmessage = e => {
                    got.push([e.lastEventId, JSON.parse(e.data)]);
                    if (got.length === 40) { source.close(); resolve({got, gaps}); }
                };
                setTimeout(() => reject(new Error('only ' + got.length + ' events')), 60000);
            })""", timeout=90)
        assert got["gaps"] == []
        assert [i for i, _ in got["got"]] == [str(n) for n in range(40)]
        assert [m["message"] for _, m in got["got"]] == [sent("a", n) for n in range(40)]
        assert {m["stream"] for _, m in got["got"]} == {"a"}
        open_one = SSE(f"{url}/events", last_event_id="-1")
    finally:
        drain(proc)
    assert len([e for e in open_one.events() if e.event == "message"]) == FRAMES * FAN  # all kept, then the end


def test_numbers_go_on_across_a_restart_of_the_stream(tmp_path):
    app, clip = events_app(tmp_path, backoff_initial=0.1)
    proc, url = start_server(app)
    try:
        with SSE(f"{url}/streams/nothing-yet/events") as sse:
            assert sse.status == 404
        r = requests.post(f"{url}/streams", json={"url": str(clip), "id": "r", "options": {"on_error": "restart"}},
                          timeout=30)
        assert r.status_code == 201, r.text
        messages, restart = [], None
        with SSE(f"{url}/streams/r/events", last_event_id="-1") as sse:
            for event in sse.events():  # the first run's messages (frames before 20), then the whole file again
                assert event.event == "message"
                messages.append(event.json())
                if restart is None and len(messages) > 1 and messages[-1]["message"] == sent("r", 0):
                    restart = len(messages) - 1
                if restart is not None and len(messages) - restart == FRAMES * FAN:
                    break
        assert [m["seq"] for m in messages] == list(range(len(messages)))  # one numbering, no hole
        assert 0 < restart <= 20 * FAN
        assert [m["message"] for m in messages[:restart]] == [sent("r", n) for n in range(restart)]
        check_stream(messages[restart:], "r", restart)
        assert stream(url, "r")["restarts"] == 1
    finally:
        drain(proc)
