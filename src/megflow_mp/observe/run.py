"""The supervisor's side of metrics: the per-run directory and the ``--metrics-port`` server.

:func:`begin_run` (once the workers are forked) creates the run directory
(:func:`.settings.run_dir`, mode 0700; the workers' samplers write their snapshots there), writes
``run.json`` (the supervisor's pid) and starts the metrics server when ``--metrics-port`` was
given (its ``/readyz`` reads the supervisor's readiness report, :mod:`megflow_mp.health`).
:func:`end_run` (once the workers are gone) stops the server and removes the directory.
A program that embeds a graph and exits without stopping it goes through :func:`_remove_at_exit`;
a directory whose supervisor was killed with SIGKILL is removed by the next run's :func:`sweep`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .settings import SETTINGS, run_dir

log = logging.getLogger("megflow_mp")
RUNS: dict = {}  # run id -> (directory, app, server or None, pid): the runs this process supervises


def begin_run(supervisor) -> None:
    """Start collecting the metrics of ``supervisor``'s run (nothing when metrics are off)."""
    if not SETTINGS.enabled:
        return
    sweep()
    directory = run_dir(supervisor.run_id)
    try:
        os.mkdir(directory, 0o700)
    except OSError as exc:
        log.warning("metrics are off for this run: cannot create %s: %s", directory, exc)
        return
    (directory / "run.json").write_text(json.dumps({"pid": os.getpid(), "app": str(supervisor.app.file)}))
    server = None
    if SETTINGS.sock is not None:
        from .server import MetricsServer

        sock, SETTINGS.sock = SETTINGS.sock, None  # one run serves it
        from ..health import report_of

        server = MetricsServer(sock, lambda: (directory, supervisor.app), lambda: report_of(supervisor),
                               tokens=SETTINGS.auth)
        server.start()
    RUNS[supervisor.run_id] = (directory, supervisor.app, server, os.getpid())


def end_run(supervisor) -> None:
    """Stop the metrics server and remove the run directory (idempotent)."""
    entry = RUNS.pop(supervisor.run_id, None)
    if entry is None:
        return
    directory, _, server, _ = entry
    if server is not None:
        server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep() -> None:
    """Remove the run directories of this user whose supervisor is gone (it was killed)."""
    for directory in Path(tempfile.gettempdir()).glob("megflow-mp-metrics-*"):
        try:
            if directory.stat().st_uid != os.getuid():
                continue
            pid = int(json.loads((directory / "run.json").read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being created, or not ours to judge
        if not _alive(pid):
            shutil.rmtree(directory, ignore_errors=True)


@atexit.register
def _remove_at_exit() -> None:
    """The interpreter ends with runs not ended (a program that never stopped its graph): remove their
    directories. Only in the process that created them (a plugin's forked child inherits RUNS)."""
    for run_id, (directory, _, server, pid) in list(RUNS.items()):
        if pid == os.getpid():
            RUNS.pop(run_id, None)
            shutil.rmtree(directory, ignore_errors=True)
