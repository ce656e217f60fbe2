"""Auth in a real browser: headless chromium logs in with a token at /login (sent there by the
server from /view/0), then plays the live view with the session cookie alone, opens the dashboard
and Swagger UI (its "Authorize" button, the operations of the document)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse

import pytest
import requests

from tests.integration.auth_apps import make_tokens
from tests.integration.conftest import start_cli, write_app
from tests.support import liveview
from tests.support.browser import Browser, BrowserError
from tests.support.clips import make_clip

pytestmark = pytest.mark.slow


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_page(browser: Browser, check: str, timeout: float = 20):
    """Poll ``check`` (JS) in the page until it is truthy (navigations in between are waited out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = browser.evaluate(check)
            if value:
                return value
        except BrowserError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{check} never true; page: {browser.evaluate('document.body.innerText')[:300]}")


def test_login_then_the_live_view_dashboard_and_swagger_work_with_the_cookie(tmp_path):
    clip = make_clip(tmp_path / "clips" / "clip.mp4", frames=300, size=(640, 360), fps=30, gop=30)
    path, tokens = make_tokens(tmp_path)
    port = free_port()
    toml = liveview.app_toml(port, str(clip.parent)) + f'\n[auth]\ntokens = "{path}"\n'
    app = write_app(tmp_path, "liveauth", {"liveauth.toml": toml, "nodes.py": liveview.STAMP_NODE})
    proc = start_cli("run", "-p", app)
    try:
        for line in iter(proc.stderr.readline, ""):
            if "listening on" in line:
                break
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/start/{urllib.parse.quote(str(clip), safe='')}"
        assert requests.post(url, timeout=30).status_code == 401
        reply = requests.post(url, headers={"Authorization": f"Bearer {tokens['operator']}"}, timeout=30)
        assert reply.text == "start stream whose id is 0"
        with Browser() as browser:
            browser.open(f"{base}/view/0")  # no session: sent to /login?next=/view/0
            assert browser.evaluate("location.pathname + location.search") == "/login?next=%2Fview%2F0"
            browser.evaluate(f"document.getElementById('token').value = {json.dumps(tokens['viewer'])}; "
                             "document.forms[0].submit(); true")
            wait_page(browser, "location.pathname === '/view/0' && document.readyState === 'complete'")
            frames = liveview.probe(browser, 10)  # the player's /view/0/live.mp4 goes with the cookie
            assert len(frames) == 10 and frames[-1]["decoded"] >= 10
            assert "megflow_session" not in browser.evaluate("document.cookie")  # HttpOnly
            browser.open(f"{base}/dashboard")
            assert browser.evaluate("location.pathname") == "/dashboard"
            assert browser.evaluate("fetch('/dashboard/state').then(r => r.status)") == 200
            assert browser.evaluate("fetch('/start/x', {method: 'POST'}).then(r => r.status)") == 403  # a viewer
            browser.open(f"{base}/docs")
            wait_page(browser, "document.querySelectorAll('.opblock').length > 5")
            assert browser.evaluate("!!document.querySelector('.btn.authorize')")
            browser.open(f"{base}/logout")
            assert browser.evaluate("location.pathname") == "/login"
            assert browser.evaluate("fetch('/list').then(r => r.status)") == 401
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
