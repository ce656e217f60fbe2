"""Secrets in camera URLs never leave a running VideoServer app, and allow_hosts decides where it may
connect: a real RTSP server (it does not check credentials, so a URL with a password plays), real
processes; every log line of the app, from its start to its drain, and every route that shows a
stream are searched for the secrets."""

from __future__ import annotations

import json
import signal
import threading
import time
from urllib.parse import quote

import requests

from megflow_mp.video.state import FORMAT, VERSION
from tests.integration.conftest import free_port, start_cli
from tests.integration.test_streams_kept import kept_app, running_with_frames, toml_list, wait_for
from tests.support.fixtures import clip_dir, rtsp_packages, rtsp_server, rtsp_server_factory  # noqa: F401

PASSWORD, TOKEN = "S3cretPassw0rd", "S3cretT0ken"
SECTION = "Access control and secrets (tokens and roles on every front door; camera URLs with secrets)"


def no_secret(text: str, where: str) -> None:
    for secret in (PASSWORD, TOKEN):
        assert secret not in text, f"{secret} shown in {where}: ...{text[max(0, text.find(secret) - 200):][:400]}"


class App:
    """The app's process with every stderr line kept (the log), from its first line on."""

    def __init__(self, app):
        self.proc = start_cli("run", "-p", app)
        self.lines: list[str] = []
        self.listening = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.listening.wait(60):
            self.proc.kill()
            raise AssertionError("server did not start: " + "".join(self.lines))

    def _read(self):
        for line in iter(self.proc.stderr.readline, ""):
            self.lines.append(line)
            if "listening on" in line:
                self.url = line.split("listening on ")[1].split()[0]
                self.listening.set()

    def drain(self) -> str:
        """Ctrl-C it, wait for its end (exit 0); its whole log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        self.reader.join(10)
        log = "".join(self.lines)
        assert self.proc.returncode == 0, log[-3000:]
        return log + out


def test_secrets_in_urls_are_never_shown_and_allow_hosts_decides(tmp_path, rtsp_server, figures):  # noqa: F811
    dead = free_port()  # nothing listens there: a camera that is down
    pw_url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{rtsp_server.port}/test"
    tok_url = f"{rtsp_server.url}?token={TOKEN}"
    dead_url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{dead}/test"
    declared = [{"id": "pw", "url": pw_url}, {"id": "tok", "url": tok_url}, {"id": "dead", "url": dead_url},
                {"id": "meta", "url": f"rtsp://admin:{PASSWORD}@169.254.169.254/latest"}]
    state = tmp_path / "state"
    state.mkdir()
    (state / "video_server.json").write_text(json.dumps({  # recorded by an earlier run, before allow_hosts
        "format": FORMAT, "version": VERSION, "node": "video/server",
        "streams": [{"id": "old", "url": f"rtsp://admin:{PASSWORD}@192.0.2.1:554/s", "options": {}}]}))
    clips = tmp_path / "clips"
    clips.mkdir()
    app = kept_app(tmp_path, free_port(), streams=toml_list(declared), allow_dirs=json.dumps([str(clips)]),
                   allow_hosts=json.dumps(["127.0.0.0/8", "*.cams.example.com"]))
    shown_pw = f"rtsp://***@127.0.0.1:{rtsp_server.port}/test"
    shown_tok = f"{rtsp_server.url}?token=***"
    shown_dead = f"rtsp://***@127.0.0.1:{dead}/test"
    app = App(app)
    try:
        url = app.url
        replies: dict[str, str] = {}

        def get(path: str) -> requests.Response:
            r = requests.get(f"{url}{path}", timeout=10)
            replies[f"GET {path} {time.monotonic()}"] = r.text
            return r

        wait_for(running_with_frames(url, "pw", 10), what="the camera with a password running")
        wait_for(running_with_frames(url, "tok", 10), what="the camera with a token running")
        dead_info = wait_for(lambda: (s := get("/streams/dead").json()).get("state") == "reconnecting"
                             and s.get("reason") and s, what="the dead camera reconnecting")
        assert dead_info["url"] == shown_dead
        assert dead_info["reason"].startswith(f"connection refused: {shown_dead}"), dead_info["reason"]
        wait_for(lambda: requests.get(f"{url}/readyz", timeout=10).status_code == 200, what="ready")
        # the shown forms, everywhere a URL is shown
        listed = {s["id"]: s for s in get("/list").json()}
        assert set(listed) == {"pw", "tok", "dead"}, listed  # meta refused, old refused and forgotten
        assert (listed["pw"]["url"], listed["tok"]["url"]) == (shown_pw, shown_tok)
        assert {s["id"]: s["url"] for s in get("/streams").json()} == {"pw": shown_pw, "tok": shown_tok,
                                                                       "dead": shown_dead}
        for sid in ("pw", "tok", "dead"):
            get(f"/streams/{sid}")
        view = get("/view").text
        assert shown_pw in view and shown_tok in view and shown_dead in view
        dash = wait_for(lambda: (d := get("/dashboard/state").json()) and len(d["streams"]) == 3 and d,
                        what="the dashboard showing the three streams")
        assert {s["id"]: s.get("url") for s in dash["streams"]} == {"pw": shown_pw, "tok": shown_tok,
                                                                     "dead": shown_dead}
        metrics = get("/metrics").text
        assert 'stream="pw"' in metrics and "megflow_stream_frames_decoded" in metrics
        # where /start may connect: refusals name the host and the setting, never the secrets
        refused = {
            f"rtsp://admin:{PASSWORD}@192.0.2.1:554/s?token={TOKEN}":
                "host 192.0.2.1 is not in the server's allow_hosts",
            f"rtsp://admin:{PASSWORD}@169.254.169.254/latest": "host 169.254.169.254 is a link-local or cloud metadata",
            f"rtsp://admin:{PASSWORD}@[fe80::1]:554/s": "host fe80::1 is a link-local or cloud metadata",
            f"http://metadata.google.internal/computeMetadata/v1/?token={TOKEN}": "is a cloud metadata service",
            # not under the wildcard; it does not resolve offline (a resolver that answers anyway: outside 127/8)
            f"rtsp://admin:{PASSWORD}@cams.example.com/s": "host cams.example.com ",
            f"rtsp:/admin:{PASSWORD}@cam/s": "rtsp:/***@cam/s is not under an allowed directory",
        }
        for bad, why in refused.items():
            r = requests.post(f"{url}/start/{quote(bad, safe='')}", timeout=30)
            replies[f"/start {bad}"] = r.text
            assert r.status_code == 400 and why in r.json()["detail"] and "allow" in r.json()["detail"], (bad, r.text)
            r = requests.post(f"{url}/streams", json={"url": bad, "id": "refused"}, timeout=30)
            replies[f"POST /streams {bad}"] = r.text
            assert r.status_code == 400 and why in r.json()["detail"], (bad, r.text)
        # accepted: localhost (it resolves inside 127.0.0.0/8) and a name under the wildcard (it does not
        # resolve here: the reader reports that, with the URL redacted, and reconnects)
        r = requests.post(f"{url}/streams", json={"url": f"rtsp://admin:{PASSWORD}@localhost:{rtsp_server.port}/test",
                                                  "id": "local"}, timeout=30)
        replies["POST /streams local"] = r.text
        assert r.status_code == 201 and r.json()["url"] == f"rtsp://***@localhost:{rtsp_server.port}/test", r.text
        r = requests.post(f"{url}/start/{quote(f'rtsp://admin:{PASSWORD}@cam1.cams.example.com/s', safe='')}",
                          params={"id": "wild"}, timeout=30)
        assert r.status_code == 200, r.text
        wild = wait_for(lambda: (s := get("/streams/wild").json()).get("reason") and s, what="the wildcard's reason")
        assert wild["url"] == "rtsp://***@cam1.cams.example.com/s"
        for sid in ("local", "wild"):
            assert requests.delete(f"{url}/streams/{sid}", timeout=30).status_code == 204
        for key, text in replies.items():
            no_secret(text, key)
    finally:
        log = app.drain()
    found = sum(text.count(secret) for text in [*replies.values(), log] for secret in (PASSWORD, TOKEN))
    figures.add(SECTION, "camera URLs with a password and a token (2 running, 1 dead and reconnecting, refused ones): "
                "every log line of the app, /list, /streams, /view, /dashboard/state, /metrics and every reply "
                "searched for the secrets", len(replies) + 1, len(replies) + 1 - (found > 0), int(found > 0),
                [f"secrets found: {found} in {len(replies)} answers and {len(log.splitlines())} log lines"])
    no_secret(log, "the app's log")
    assert shown_dead in log  # its reconnects are logged, redacted
    meta = [line for line in log.splitlines() if "stream meta" in line]
    assert len(meta) == 1 and "cannot start: refused: host 169.254.169.254 is a link-local" in meta[0], meta
    assert "rtsp://***@169.254.169.254/latest" in meta[0]
    old = [line for line in log.splitlines() if "stream old" in line]
    assert len(old) == 1 and "host 192.0.2.1 is not in the server's allow_hosts" in old[0], old
    recorded = json.loads((state / "video_server.json").read_text())["streams"]
    assert [r["id"] for r in recorded] == [], "the refused recorded stream is forgotten; declared ones never recorded"
