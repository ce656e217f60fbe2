"""Fixtures for tests that run whole apps: a CLI runner, tiny apps written into tmp dirs, and
leak checks (no process and no /dev/shm entry may outlive a test)."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _children() -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


@pytest.fixture(scope="session", autouse=True)
def subreaper():
    """Orphans of the apps we start are reparented to this process, so leaks are visible."""
    ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    yield


@pytest.fixture(autouse=True)
def no_leaks():
    shm_before = set(os.listdir("/dev/shm"))
    yield
    deadline = time.monotonic() + 5
    while _children() and time.monotonic() < deadline:
        for pid in _children():
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.05)
    left = _children()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert not left, f"processes left behind: {left}"
    assert set(os.listdir("/dev/shm")) == shm_before, "shared-memory segments left in /dev/shm"


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "megflow_mp.cli", *map(str, args)]


# apps started by the tests record their VideoServer streams here, not in the user's ~/.local/state
STATE_HOME = tempfile.mkdtemp(prefix="megflow-mp-tests-state-")


def env() -> dict:
    e = dict(os.environ)
    e.setdefault("XDG_STATE_HOME", STATE_HOME)
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e["PYTHONUNBUFFERED"] = "1"
    return e


def run_cli(*args, timeout: float = 60, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout, env=env(), cwd=cwd or ROOT)


def start_cli(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                            cwd=cwd or ROOT)


def write_app(root: Path, name: str, files: dict[str, str]) -> Path:
    """A plugin package ``root/name`` with ``files`` (dedented); the config is ``name.toml`` inside."""
    pkg = root / name
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    for fname, text in files.items():
        (pkg / fname).write_text(textwrap.dedent(text).lstrip())
    return pkg


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 30) -> list[str]:
    """Read stdout lines until one contains ``needle``; return the lines read."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen; got {lines[-5:]}")


def communicate(proc: subprocess.Popen, timeout: float = 30) -> tuple[str, str]:
    """``proc.communicate(timeout)`` that keeps the output :func:`wait_for_line` already pulled into
    ``proc.stdout``'s buffer (``communicate`` reads the pipes' file descriptors, past that buffer)."""
    box: dict = {}
    readers = [threading.Thread(target=lambda n=n: box.__setitem__(n, getattr(proc, n).read()), daemon=True)
               for n in ("stdout", "stderr")]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    for reader in readers:
        reader.join(timeout)
    return box.get("stdout", ""), box.get("stderr", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(app, timeout: float = 30, extra=()) -> tuple[subprocess.Popen, str]:
    """Run the app of plugin dir ``app`` whose server node logs ``listening on URL``; return the
    process and the URL. ``extra``: more ``run`` arguments (``-c CONFIG``, ``--dynamic VARS``).
    Stop it with :func:`drain`."""
    return wait_listening(start_cli("run", "-p", app, *extra), timeout)


def wait_listening(proc: subprocess.Popen, timeout: float = 30) -> tuple[subprocess.Popen, str]:
    """Wait until the app ``proc`` logs ``listening on URL``; return it and the URL (killed if not)."""
    deadline = time.monotonic() + timeout
    for line in iter(proc.stderr.readline, ""):
        if "listening on" in line:
            return proc, line.split("listening on ")[1].split()[0]
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError("server did not start: " + proc.communicate()[1])


def drain(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """Ctrl-C the app and wait for it; it must exit 0. Returns its remaining (stdout, stderr)."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out, err
