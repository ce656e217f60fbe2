"""What tests read of a process in /proc: its name and its thread count."""

from __future__ import annotations

from pathlib import Path


def proc_name(pid: int) -> str:
    """The process's name (/proc/PID/comm: ``mf:<node>`` for a worker, ``mf-forker``); "" if gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def thread_count(pid: int) -> int:
    """The number of threads of process ``pid`` (/proc/PID/status)."""
    return next(int(line.split(":", 1)[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("Threads:"))
