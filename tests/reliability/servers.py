"""Real front doors for the reliability suite: small apps run by ``megflow-mp run`` in their own
process tree (supervisor + one worker per node), each on a free port of 127.0.0.1.

    with ServerApp.start(tmp_path, "ImageServer") as app:
        requests.post(f"{app.url}/analyze/x", data=jpeg)
        app.workers_alive()       # every worker the app started still runs (same pids)
        app.log_problems()        # tracebacks / errors the app printed so far

Each app's graph does a small, checkable job: ImageServer turns the picture upside down
(``response = "image"``), BytesServer reverses the body, VideoServer's subgraph sends one JSON line
per frame (``{"stream": id, "frame": n, "shape": [h, w, 3]}``). The app's stderr is read by a
thread for its whole life, so a chatty app never blocks on a full pipe, and kept for the report.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from megflow_mp.supervisor import children_of

ROOT = Path(__file__).resolve().parents[2]

GRAPH = """
main = "serve"
[[graphs]]
name = "subgraph"
inputs = [{ name = "inp", cap = 16, ports = ["work:inp"] }]
outputs = [{ name = "out", cap = 16, ports = ["work:out"] }]
    [[graphs.nodes]]
    name = "work"
    ty = "{work}"
[[graphs]]
name = "serve"
connections = [
  { cap = 16, ports = ["source:out", "destination:inp"] },
  { cap = 16, ports = ["source:inp", "destination:out"] },
]
    [[graphs.nodes]]
    name = "source"
    ty = "{server}"
    port = {port}
    {args}
    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""

NODES = '''
import json
from megflow import register

@register(inputs=["inp"], outputs=["out"])
class Flip:
    """ImageServer: the picture upside down."""
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        e.msg["data"] = e.msg["data"][::-1].copy()
        self.out.send(e)

@register(inputs=["inp"], outputs=["out"])
class Reverse:
    """BytesServer: the body reversed."""
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        self.out.send(e.repack({"data": e.msg["data"][::-1].tobytes()}))

@register(inputs=["inp"], outputs=["out"])
class Lines:
    """VideoServer: one JSON line per frame."""
    def __init__(self, name, args): pass
    def exec(self):
        e = self.inp.recv()
        if e is None: return
        self.out.send(e.repack(json.dumps({"stream": e.from_addr, "frame": e.partial_id,
                                           "shape": list(e.msg["data"].shape)})))
'''

WORK = {"ImageServer": "Flip", "BytesServer": "Reverse", "VideoServer": "Lines"}
PROBLEMS = ("Traceback", "Exception in ASGI", "error", "ERROR", "CRITICAL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_app(root: Path, server: str, port: int, **args) -> Path:
    """A plugin directory ``root/<server lower>_app`` whose default config serves ``server`` on ``port``."""
    name = f"{server.lower()}_app"
    pkg = root / name
    pkg.mkdir(parents=True, exist_ok=True)
    lines = "\n    ".join(f"{k} = {toml_value(v)}" for k, v in args.items())
    toml = GRAPH.replace("{work}", WORK[server]).replace("{server}", server).replace("{port}", str(port))
    (pkg / f"{name}.toml").write_text(toml.replace("{args}", lines))
    (pkg / "__init__.py").write_text("")
    (pkg / "nodes.py").write_text(textwrap.dedent(NODES).lstrip())
    return pkg


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerApp:
    """One running app (``megflow-mp run -p DIR``) with one front door at ``url``."""

    def __init__(self, plugin_dir: Path, port: int, cwd: Path, ready_timeout: float = 60):
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "megflow_mp.cli", "run", "-p", str(plugin_dir)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=cli_env(), cwd=cwd)
        listening = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(listening,), daemon=True)
        self._reader.start()
        if not listening.wait(ready_timeout) or not self.serving():
            self.kill()
            raise AssertionError("server did not start:\n" + "".join(self.lines[-30:]))
        self.workers = sorted(children_of(self.proc.pid))

    @classmethod
    def start(cls, root: Path, server: str, cwd: Path | None = None, **args) -> ServerApp:
        port = free_port()
        args.setdefault("host", "127.0.0.1")
        return cls(write_app(root, server, port, **args), port, cwd or root)

    def serving(self) -> bool:
        """The app logged ``listening on`` (the reader also wakes its waiter when the log ends: an app
        that exited at start, e.g. its port taken meanwhile, is not serving even before it is reaped)."""
        return any("listening on" in line for line in self.lines) and self.proc.poll() is None

    def _read(self, listening: threading.Event) -> None:
        for line in iter(self.proc.stderr.readline, ""):
            self.lines.append(line)
            if "listening on" in line:
                listening.set()
        listening.set()

    def workers_alive(self) -> bool:
        """The supervisor and every worker it started run, and no worker was replaced."""
        if self.proc.poll() is not None:
            return False
        if sorted(children_of(self.proc.pid)) != self.workers:
            return False
        for pid in self.workers:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                        return False
            except OSError:
                return False
        return True

    def log_problems(self) -> list[str]:
        """Lines of the app's log that report an error or a traceback."""
        return [line.rstrip() for line in self.lines if any(p in line for p in PROBLEMS)]

    def stop(self, timeout: float = 60) -> int:
        """Ctrl-C (drain), then wait; returns the exit code (SIGKILL after ``timeout``: -9)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(10)
        self.proc.stderr.close()
        return self.proc.returncode

    def kill(self) -> None:
        for pid in children_of(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> ServerApp:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(cond, timeout: float, step: float = 0.05) -> bool:
    """Poll ``cond`` (an HTTP probe of another process: nothing to wait on) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())
