"""Debian's headless chromium driven over the DevTools protocol (a websocket, with the `websockets` package).

:class:`Browser` starts ``/usr/bin/chromium`` with a fresh profile and a DevTools port chosen by
chromium itself, opens one page and evaluates JavaScript in it (:meth:`Browser.evaluate` awaits
promises, so a test can wait on a condition inside the page with its own timeout). The process is
killed with its helper processes (its own process group) by :meth:`Browser.close` (a context
manager); helpers reparented to a subreaper are left for it to reap.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.request

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0"]


class BrowserError(RuntimeError):
    """Chromium did not start, or a script in the page failed."""


class Browser:
    def __init__(self, timeout: float = 60):
        from websockets.sync.client import connect

        binary = shutil.which("chromium")
        if binary is None:
            raise BrowserError("Debian's chromium is needed (make system-deps installs it)")
        self.profile = tempfile.TemporaryDirectory(prefix="megflow-chromium-")
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile.name}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)  # its helpers share the group: killed together
        endpoint = None
        for line in self.proc.stderr:
            found = re.search(r"DevTools listening on ws://([^/]+)/", line)
            if found:
                endpoint = found.group(1)
                break
        if endpoint is None:
            self.close()
            raise BrowserError("chromium exited before opening its DevTools port")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # chromium's later warnings, discarded
        with urllib.request.urlopen(f"http://{endpoint}/json", timeout=timeout) as reply:
            page = next(t for t in json.load(reply) if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
        self.timeout = timeout
        self.ids = itertools.count(1)

    def call(self, method: str, timeout: float | None = None, **params) -> dict:
        """One DevTools command; its ``result`` (events that arrive meanwhile are skipped)."""
        mid = next(self.ids)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=timeout or self.timeout))
            if reply.get("id") == mid:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str, timeout: float | None = None) -> None:
        """Load ``url`` in the page; returns once its load event fired."""
        self.call("Page.enable")
        mid = next(self.ids)
        self.ws.send(json.dumps({"id": mid, "method": "Page.navigate", "params": {"url": url}}))
        loaded = answered = False
        while not (loaded and answered):
            reply = json.loads(self.ws.recv(timeout=timeout or self.timeout))
            if reply.get("id") == mid:
                if "error" in reply or reply["result"].get("errorText"):
                    raise BrowserError(f"cannot open {url}: {reply.get('error') or reply['result']['errorText']}")
                answered = True
            loaded = loaded or reply.get("method") == "Page.loadEventFired"

    def evaluate(self, expression: str, timeout: float | None = None):
        """The JSON value of ``expression`` in the page (a promise is awaited); BrowserError if it throws."""
        result = self.call("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"script failed: {text}")
        return result["result"].get("value")

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.profile.cleanup()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
