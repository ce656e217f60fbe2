"""A real ``redis-server`` for tests: a private instance on a free port, no persistence.

    with RedisServer() as server:
        r = server.client()            # redis.Redis(decode_responses=True) bound to it
        ... server.host, server.port, server.url ("redis://127.0.0.1:PORT/0")

The Debian package ``redis-server`` is installed on first use when the binary is missing (needs root
and apt-get, as ``make test``/``.ci/run`` run); otherwise :class:`RedisUnavailable` says what to do.
The server dies with the process that started it (``prctl(PR_SET_PDEATHSIG)``), so a crashed test run
leaves no server behind.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from tests.support.rtsp import free_port

APT_INSTALL = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"]
_lock = threading.Lock()


class RedisUnavailable(RuntimeError):
    """redis-server is missing and cannot be installed here."""


def redis_server_binary() -> str:
    """Path of ``redis-server``, installing the Debian package once if it is missing."""
    with _lock:
        found = shutil.which("redis-server") or (os.path.exists("/usr/bin/redis-server") and "/usr/bin/redis-server")
        if found:
            return found
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise RedisUnavailable(f"redis-server not found; install it as root: {' '.join(APT_INSTALL)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"], APT_INSTALL):
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if r.returncode != 0:
                raise RedisUnavailable(f"{' '.join(cmd)} failed ({r.returncode}): {(r.stdout + r.stderr)[-2000:]}")
        return "/usr/bin/redis-server"


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class RedisServer:
    """A redis-server on ``host``:``port`` (a free port when not given), ready when ``__init__`` returns
    (it answers PING). ``stop()`` terminates and reaps it; a context manager stops it on exit."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, ready_timeout: float = 10.0,
                 data_dir: str | os.PathLike | None = None):
        self.host, self.port = host, port or free_port(host)
        self._dir = tempfile.TemporaryDirectory(prefix="redis-")
        # data_dir: durable (append-only file, fsync per write) and kept, so a server killed and started
        # again on the same data_dir has every write it acknowledged
        durable = ["--appendonly", "yes", "--appendfsync", "always"] if data_dir else ["--appendonly", "no"]
        cmd = [redis_server_binary(), "--bind", host, "--port", str(self.port), "--save", "", *durable,
               "--dir", str(data_dir or self._dir.name), "--daemonize", "no", "--protected-mode", "no",
               "--loglevel", "warning"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                self._dir.cleanup()
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {out[-2000:]}")
            try:
                if self.client().ping():
                    break
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server not ready on {self.host}:{self.port} after {ready_timeout} s")
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self, **kwargs):
        import redis
        return redis.Redis(host=self.host, port=self.port, decode_responses=True, socket_timeout=5, **kwargs)

    def kill(self) -> None:
        """SIGKILL at once (a crash); reaped."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._dir.cleanup()

    def __enter__(self) -> "RedisServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
