"""The supervisor's side of metrics: the per-run directory and the ``--metrics-port`` server.

:func:`begin_run` (once the workers are forked) creates the run directory
(:func:`.settings.run_dir`, mode 0700; the workers' samplers write their snapshots there), writes
``run.json`` (the supervisor's pid) and starts the metrics server when ``--metrics-port`` was
given. :func:`end_run` (once the workers are gone) stops the server and removes the directory.
Nothing of a run is left behind, except when the supervisor itself is killed with SIGKILL (then a
small directory stays in the temporary folder).
"""

from __future__ import annotations

import json
import logging
import os
import shutil

from .settings import SETTINGS, run_dir

log = logging.getLogger("megflow_mp")
RUNS: dict = {}  # run id -> (directory, app, server or None): the runs this process supervises


def begin_run(supervisor) -> None:
    """Start collecting the metrics of ``supervisor``'s run (nothing when metrics are off)."""
    if not SETTINGS.enabled:
        return
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
        server = MetricsServer(sock, lambda: (directory, supervisor.app))
        server.start()
    RUNS[supervisor.run_id] = (directory, supervisor.app, server)


def end_run(supervisor) -> None:
    """Stop the metrics server and remove the run directory (idempotent)."""
    entry = RUNS.pop(supervisor.run_id, None)
    if entry is None:
        return
    directory, _, server = entry
    if server is not None:
        server.stop()
    shutil.rmtree(directory, ignore_errors=True)
