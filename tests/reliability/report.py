"""The figures of a reliability run and the RELIABILITY.md they make.

A test adds one row per scenario: what was tried, how many cases, how many held (the expected
outcome), how many were lost (a 5xx, a dead worker, a traceback, a hang, ...) and notes (the
first example of each loss). Each row names the command that reproduces it: the test's own id
at the size of the run.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from tests.reliability.sizes import SIZE, size

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Row:
    section: str
    what: str
    tried: int
    held: int
    lost: int
    test: str
    notes: list[str] = field(default_factory=list)


@dataclass
class Figures:
    rows: list[Row] = field(default_factory=list)
    current: str = ""
    started: float = 0.0
    load_before: tuple = (0.0, 0.0, 0.0)

    def add(self, section: str, what: str, tried: int, held: int, lost: int, notes=()) -> Row:
        """Record one scenario of the running test; returns the row (for the test's asserts)."""
        row = Row(section, what, int(tried), int(held), int(lost), self.current, [str(n) for n in notes])
        self.rows.append(row)
        return row


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def command(test: str) -> str:
    env = f"MEGFLOW_MP_RELIABILITY={SIZE}"
    return f"`{env} .venv/bin/python -m pytest -q '{test}'`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_report(figures: Figures, path: str | os.PathLike, exitstatus: int) -> None:
    """Write ``path`` (markdown) from ``figures``."""
    now = time.gmtime()
    load_after = os.getloadavg()
    took = time.time() - figures.started
    lost = sum(r.lost for r in figures.rows)
    s = size()
    lines = [
        "# Reliability",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', now)} on `{socket.gethostname()}` ({os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}), commit {_commit()}; load average "
        f"{figures.load_before[0]:.2f} at the start, {load_after[0]:.2f} at the end (1-minute; other work shares "
        f"the machine); {took / 60:.1f} minutes.",
        "",
        f"Size `{SIZE}`: {s.http_requests:,} generated requests per front door, {s.config_cases:,} mutated configs "
        f"in-process + {s.config_subprocess} through a real `megflow-mp check` process, {s.slow_clients} slow "
        f"clients. schemathesis {_version('schemathesis')}, hypothesis {_version('hypothesis')}, "
        f"uvicorn {_version('uvicorn')}, starlette {_version('starlette')}.",
        "",
        "Made by `make chaos` (`MEGFLOW_MP_RELIABILITY=full MEGFLOW_MP_RELIABILITY_REPORT=RELIABILITY.md "
        ".venv/bin/python -m pytest -q tests/reliability`); the same tests run small in `make test`. "
        "Each row names the command that reproduces it.",
        "",
        f"**Lost in total: {lost}** (the target is 0 everywhere); pytest exit status {exitstatus}.",
    ]
    sections: dict[str, list[Row]] = {}
    for row in figures.rows:
        sections.setdefault(row.section, []).append(row)
    for section, rows in sections.items():
        lines += ["", f"## {section}", "", "| what was tried | tried | held | lost | reproduce |",
                  "|---|---:|---:|---:|---|"]
        for r in rows:
            lines.append(f"| {_cell(r.what)} | {r.tried:,} | {r.held:,} | {r.lost:,} | {command(r.test)} |")
        notes = [(r.what, n) for r in rows for n in r.notes]
        if notes:
            lines += [""] + [f"- {_cell(what)}: {_cell(n)}" for what, n in notes]
    Path(path).write_text("\n".join(lines) + "\n")
