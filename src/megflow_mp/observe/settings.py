"""Whether metrics are collected, how often, how long an ended stream's series stay, and the
``--metrics-port`` socket.

One :data:`SETTINGS` object per process, set by the command line (:func:`configure`) before the
supervisor forks its workers, which inherit it. Environment: ``MEGFLOW_MP_METRICS=0`` switches
metrics off, ``MEGFLOW_MP_METRICS_RETENTION`` (seconds, default 60) is how long an ended stream's
series stay exported, ``MEGFLOW_MP_METRICS_INTERVAL`` (seconds, default 1) how often every process
writes its snapshot.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass
class Settings:
    enabled: bool = True
    interval: float = 1.0  # seconds between two snapshots of a process
    retention: float = 60.0  # seconds an ended stream's series stay
    port: int | None = None  # --metrics-port: the supervisor serves /metrics and /dashboard there
    host: str = "127.0.0.1"
    sock: socket.socket | None = None  # bound by configure(), so a port in use fails before any fork
    auth: str | None = None  # --metrics-auth: the tokens file the metrics port takes (megflow_mp.auth)


def _from_env() -> Settings:
    return Settings(enabled=os.environ.get("MEGFLOW_MP_METRICS", "1").lower() not in ("0", "off", "false", "no"),
                    interval=_env_float("MEGFLOW_MP_METRICS_INTERVAL", 1.0),
                    retention=_env_float("MEGFLOW_MP_METRICS_RETENTION", 60.0))


SETTINGS = _from_env()


def configure(enabled: bool | None = None, port: int | None = None, host: str | None = None,
              auth: str | None = None) -> Settings:
    """Set this process's settings (the command line, before ``run``). A ``port`` is bound at once:
    raises :class:`~megflow_mp.errors.FrontDoorError` when it cannot be (in use, no permission).
    ``auth``: the tokens file the metrics port requires (``--metrics-auth``)."""
    if auth is not None:
        SETTINGS.auth = auth
    if enabled is not None:
        SETTINGS.enabled = enabled
    if host is not None:
        SETTINGS.host = host
    if port is not None:
        from ..errors import FrontDoorError
        from ..frontdoor import bind

        try:
            SETTINGS.sock = bind(SETTINGS.host, port)
        except FrontDoorError as exc:
            raise FrontDoorError(f"--metrics-port {port}: {str(exc).split(' (')[0]}") from None
        SETTINGS.port = SETTINGS.sock.getsockname()[1]
    return SETTINGS


def run_dir(run_id: str) -> Path:
    """The per-run directory of snapshots (created and removed by the supervisor)."""
    return Path(tempfile.gettempdir()) / f"megflow-mp-metrics-{run_id}"


def _close_in_child() -> None:
    """A forked worker does not keep the supervisor's metrics socket."""
    if SETTINGS.sock is not None:
        SETTINGS.sock.close()
        SETTINGS.sock = None


os.register_at_fork(after_in_child=_close_in_child)
