"""The reliability suite: fuzzing, hostile clients, killed processes, outages, overload and churn
against real apps, at two sizes.

``MEGFLOW_MP_RELIABILITY=small`` (the default, part of ``make test``) runs every scenario with a few
hundred cases; ``full`` (``make chaos``) runs the counts RELIABILITY.md reports. With
``MEGFLOW_MP_RELIABILITY_REPORT=FILE`` the session writes what each test tried, what held and what
was lost to FILE (see :mod:`report`).

Tests record their figures with the ``figures`` fixture and assert on them afterwards, so a failed
figure is both a failed test and a row of the report.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

import pytest

from tests.reliability.report import Figures, write_report
from tests.reliability.sizes import SIZE, size

_FIGURES = Figures()


def pytest_configure(config):
    _FIGURES.started = time.time()
    _FIGURES.load_before = os.getloadavg()


@pytest.fixture(autouse=True)
def ieee_floats():
    """hypothesis draws subnormal floats. Importing ``megengine`` (built with -ffast-math) turns on
    the CPU's flush-to-zero mode for the whole process, and earlier tests of the same pytest run
    import it: give this suite the default floating-point environment back (glibc's FE_DFL_ENV)."""
    if sys.float_info.min / 2 == 0.0:
        ctypes.CDLL("libm.so.6").fesetenv(ctypes.c_void_p(-1))
    assert sys.float_info.min / 2 > 0.0


@pytest.fixture
def figures(request) -> Figures:
    """The session's figures; the report is rewritten after each test, so a run cut short keeps
    what it measured."""
    _FIGURES.current = request.node.nodeid
    yield _FIGURES
    path = os.environ.get("MEGFLOW_MP_RELIABILITY_REPORT")
    if path:
        write_report(_FIGURES, path, None)


@pytest.fixture
def sizes():
    return size()


def pytest_collection_modifyitems(config, items):
    """Full size runs longer than the suite's default per-test limit."""
    if SIZE != "full":
        return
    for item in items:
        if "tests/reliability/" in item.nodeid:
            item.add_marker(pytest.mark.timeout(1500))


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("MEGFLOW_MP_RELIABILITY_REPORT")
    if path and _FIGURES.rows:
        write_report(_FIGURES, path, exitstatus)


def _children() -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


@pytest.fixture(autouse=True)
def no_leaks():
    """No process started by a test and no /dev/shm entry may outlive it."""
    before, shm_before = set(_children()), set(os.listdir("/dev/shm"))
    yield
    deadline = time.monotonic() + 5
    while set(_children()) - before and time.monotonic() < deadline:
        for pid in set(_children()) - before:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.05)
    left = sorted(set(_children()) - before)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert not left, f"processes left behind: {left}"
    assert set(os.listdir("/dev/shm")) <= shm_before, "shared-memory segments left in /dev/shm"
