"""Apps with auth for the auth tests: a tokens file with a viewer and an operator, the reliability
suite's small server apps with ``[auth]``, and raw HTTP requests from any loopback address."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.reliability.servers import ServerApp, cli_env, free_port, write_app


def make_tokens(root: Path) -> tuple[Path, dict]:
    """``(tokens file, {"viewer": token, "operator": token})`` made by ``megflow-mp token add``."""
    path, tokens = root / "tokens.toml", {}
    for role in ("viewer", "operator"):
        out = subprocess.run([sys.executable, "-m", "megflow_mp.cli", "token", "add", f"the-{role}", "--role", role,
                              "--file", str(path)], capture_output=True, text=True, env=cli_env(), check=True)
        tokens[role] = out.stdout.strip().splitlines()[-1]
    return path, tokens


class AuthApp(ServerApp):
    """A :class:`ServerApp` whose config has ``[auth] tokens``, with ``extra_cli`` on its command line."""

    def __init__(self, plugin_dir: Path, port: int, cwd: Path, extra_cli=(), scheme: str = "http",
                 ready_timeout: float = 60):
        from megflow_mp.supervisor import children_of

        self.url, self.port, self.lines = f"{scheme}://127.0.0.1:{port}", port, []
        self.proc = subprocess.Popen([sys.executable, "-m", "megflow_mp.cli", "run", "-p", str(plugin_dir),
                                      *map(str, extra_cli)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=cwd)
        listening = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(listening,), daemon=True)
        self._reader.start()
        if not listening.wait(ready_timeout) or not self.serving():
            self.kill()
            raise AssertionError("server did not start:\n" + "".join(self.lines[-30:]))
        self.workers = sorted(children_of(self.proc.pid))

    @classmethod
    def start_with(cls, root: Path, server: str, tokens: Path | None, extra_cli=(), scheme="http", **args):
        port = free_port()
        args.setdefault("host", "127.0.0.1")
        pkg = write_app(root, server, port, **args)
        if tokens is not None:
            toml = pkg / f"{pkg.name}.toml"
            toml.write_text(toml.read_text() + f'\n[auth]\ntokens = "{tokens}"\n')
        return cls(pkg, port, root, extra_cli, scheme)


def request(port: int, method: str, path: str, token: str | None = None, body: bytes | None = None,
            headers: dict | None = None, source: str = "127.0.0.1", timeout: float = 30, context=None,
            read: bool = True) -> tuple[int, dict, bytes]:
    """One request from loopback address ``source`` (a fresh connection): ``(status, headers, body)``;
    with ``read=False`` the body is not read (a stream) and is ``b""``."""
    if context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0),
                                           context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=hdrs)
        reply = conn.getresponse()
        data = reply.read() if read else b""
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, data
    finally:
        conn.close()


def operations(port: int, token: str, context=None) -> list[tuple[str, str, dict]]:
    """Every ``(method, path template, operation)`` of the server's own /openapi.json."""
    status, _, body = request(port, "GET", "/openapi.json", token, context=context)
    assert status == 200, body
    doc = json.loads(body)
    return [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def wait_until(check, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False
