"""A real RTSP server for tests: GStreamer's gst-rtsp-server in a subprocess.

The ``gi`` bindings live in the Debian system interpreter, so ``rtsp_server.py`` runs under
``/usr/bin/python3`` whatever interpreter runs the tests. Typical use::

    from tests.support.rtsp import RtspServer
    with RtspServer(file="clip.ts") as server:      # or RtspServer(pattern="ball")
        av.open(server.url, options={"rtsp_transport": "tcp"}, timeout=(5, 5))
        server.kill()       # abrupt drop (SIGKILL): clients see EOF, new opens are refused
        server.restart()    # same port, same source: clients can reconnect

:func:`ensure_rtsp_packages` installs the Debian packages on first use when running as root with
apt-get (``make test`` does it up front), and raises :class:`RtspUnavailable` otherwise.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).resolve().with_name("rtsp_server.py")
PACKAGES = ["gir1.2-gst-rtsp-server-1.0", "python3-gi", "gstreamer1.0-plugins-good",
            "gstreamer1.0-plugins-bad", "gstreamer1.0-plugins-ugly"]
APT_INSTALL = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]

# what PyAV clients in tests pass to av.open (fast start; a hung server fails after ~10 s)
CLIENT_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "200000", "probesize": "32768", "timeout": "5000000"}
CLIENT_TIMEOUT = (5, 5)


class RtspUnavailable(RuntimeError):
    """The RTSP server cannot run here (packages missing and not installable)."""


_lock = threading.Lock()
_ready = False


def _server_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("GST_DEBUG", "1")            # errors only, on stderr
    return env


def _check() -> tuple[bool, str]:
    """Can the system interpreter load gi + gst-rtsp-server + the elements? (Also builds
    GStreamer's plugin registry, so that servers started later spawn no gst-plugin-scanner.)"""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False, f"{SYSTEM_PYTHON} not found"
    try:
        r = subprocess.run([SYSTEM_PYTHON, str(SERVER_SCRIPT), "--check"], capture_output=True, text=True,
                           timeout=120, env=_server_env())
    except subprocess.TimeoutExpired:
        return False, "rtsp_server.py --check timed out"
    out = (r.stdout + r.stderr).strip()
    return r.returncode == 0 and "OK" in r.stdout, out[-2000:]


def ensure_rtsp_packages() -> None:
    """Make sure the GStreamer RTSP server can run; install the Debian packages if needed.

    Runs ``apt-get update -qq`` and ``apt-get install -y -qq --no-install-recommends ...`` (about
    10-15 s, ~100 MB) when the check fails; raises :class:`RtspUnavailable` when not root, without
    apt-get, or when the installation does not help. Cheap after the first success (cached).
    """
    global _ready
    with _lock:
        if _ready:
            return
        ok, detail = _check()
        if not ok:
            why = None
            if os.geteuid() != 0:
                why = "not root"
            elif shutil.which("apt-get") is None:
                why = "no apt-get"
            if why:
                raise RtspUnavailable(
                    f"GStreamer RTSP server unavailable ({detail or 'check failed'}) and cannot install it "
                    f"({why}); run as root: apt-get update && {' '.join(APT_INSTALL)}")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            for cmd in (["apt-get", "update", "-qq"], APT_INSTALL):
                r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
                if r.returncode != 0:
                    raise RtspUnavailable(f"{' '.join(cmd)} failed ({r.returncode}): {(r.stdout + r.stderr)[-2000:]}")
            ok, detail = _check()
            if not ok:
                raise RtspUnavailable(f"GStreamer RTSP server still unavailable after installing {PACKAGES}: {detail}")
        _ready = True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (bound once by the kernel's choice, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class RtspServer:
    """``rtsp://127.0.0.1:PORT/test`` serving ``file`` (an MPEG-TS H.264 clip, looped) or a
    videotestsrc ``pattern`` (default ``ball``) of ``size`` (width, height; default 640x360) at ``fps``
    (default 25), x264 with a keyframe every second. Starts in ``__init__``
    (``start=False`` to delay); a context manager that stops it on exit.

    Each client gets its own pipeline; ``shared=True`` gives all of them one (cheaper with many
    clients, but gst-rtsp-server 1.22 aborts when several connect at once: open them one by one; with
    ``file``, a shared media answers a second client 5XX: serve a file unshared, it costs little).

    ``.stop()`` SIGTERM then SIGKILL; ``.kill()`` SIGKILL at once; ``.restart()`` starts again on the
    same port (stopping first if running). ``startup_s`` is how long the last start took to READY.
    """

    def __init__(self, file: str | os.PathLike | None = None, pattern: str | None = None, port: int | None = None,
                 host: str = "127.0.0.1", mount: str = "/test", ready_timeout: float = 20.0, start: bool = True,
                 shared: bool = False, size: tuple[int, int] = (640, 360), fps: int = 25):
        if file is not None and pattern is not None:
            raise ValueError("give file or pattern, not both")
        if file is not None and (tuple(size) != (640, 360) or fps != 25):
            raise ValueError("size and fps are the pattern's: a file is served as it was encoded")
        self.size, self.fps = (int(size[0]), int(size[1])), int(fps)
        self.file = None if file is None else Path(file).resolve()
        if self.file is not None and not self.file.is_file():
            raise FileNotFoundError(self.file)
        self.pattern = pattern if file is None else None
        self.host, self.mount, self.ready_timeout, self.shared = host, mount, ready_timeout, shared
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._log_dir = tempfile.TemporaryDirectory(prefix="rtsp-server-")
        self._starts = 0
        if start:
            self.start()

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("server never started: no port yet")
        return f"rtsp://{self.host}:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log(self) -> str:
        """The server's stderr (GStreamer errors) across all its starts."""
        p = Path(self._log_dir.name) / "stderr.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def start(self) -> "RtspServer":
        if self.running:
            raise RuntimeError(f"server already running (pid {self.proc.pid})")
        ensure_rtsp_packages()
        t0 = time.monotonic()
        deadline = t0 + self.ready_timeout
        fixed = self.port is not None
        last = ""
        while True:
            port = self.port if fixed else free_port(self.host)
            ok, last = self._spawn(port, deadline)
            if ok:
                self.port = port
                self.startup_s = time.monotonic() - t0
                self._starts += 1
                return self
            # port taken (by a race, or a dying previous server on restart): retry until the deadline
            if time.monotonic() >= deadline or "cannot listen" not in last:
                raise RuntimeError(f"RTSP server did not become ready on port {port}: {last.strip()}\n"
                                   f"stderr:\n{self.log()[-2000:]}")
            time.sleep(0.05)

    def _spawn(self, port: int, deadline: float) -> tuple[bool, str]:
        cmd = [SYSTEM_PYTHON, "-u", str(SERVER_SCRIPT), "--host", self.host, "--port", str(port), "--mount", self.mount]
        cmd += ["--file", str(self.file)] if self.file else [
            "--pattern", self.pattern or "ball", "--width", str(self.size[0]), "--height", str(self.size[1]),
            "--fps", str(self.fps)]
        cmd += ["--shared"] if self.shared else []
        cmd += ["--die-with-parent", str(os.getpid())]    # no server outlives a crashed test run
        with open(Path(self._log_dir.name) / "stderr.log", "ab") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    env=_server_env())
        self.proc = proc
        out = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while b"\n" not in out or not (out.startswith(b"READY") or out.startswith(b"ERROR")):
                left = deadline - time.monotonic()
                if left <= 0:
                    self._terminate(signal.SIGKILL)
                    return False, f"timeout after {self.ready_timeout} s; stdout {out!r}"
                if not sel.select(timeout=min(left, 0.5)):
                    continue
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:                   # exited before READY
                    self._terminate(signal.SIGKILL)
                    return False, f"exited with {proc.returncode} before READY; stdout {out.decode(errors='replace')!r}"
                out += chunk
        if out.startswith(b"READY"):
            return True, out.decode()
        self._terminate(signal.SIGKILL)
        return False, out.decode(errors="replace")

    def _terminate(self, sig: int, grace: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                if sig != signal.SIGKILL:
                    proc.send_signal(signal.SIGCONT)    # a paused server handles SIGTERM only once resumed
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (clean shutdown, clients see EOF); SIGKILL after ``grace`` seconds; reaped."""
        self._terminate(signal.SIGTERM, grace)

    def kill(self) -> None:
        """SIGKILL at once (an abrupt drop: sockets closed by the kernel); reaped."""
        self._terminate(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: a hung server (connections stay open, nothing is sent). ``resume()`` or ``stop()``."""
        if self.running:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> "RtspServer":
        """Stop if running, then start again on the same port with the same source."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self._log_dir.cleanup()

    def __enter__(self) -> "RtspServer":
        if not self.running and self._starts == 0:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RtspServer {self.url if self.port else '?'} {state} {self.file or self.pattern}>"
