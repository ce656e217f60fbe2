"""Shared helpers of the unit tests.

- ``isolated_imports``: a fixture that undoes what importing plugins does to ``sys.path``,
  ``sys.modules`` (and so the types those modules registered) (use it with ``pytestmark`` or ``usefixtures``).
- :func:`run_tasks`: spawn functions as tasks of a hub and run it until all of them returned.
"""

from __future__ import annotations

import sys

import pytest


@pytest.fixture
def isolated_imports():
    """Undo what importing plugins does to sys.path and sys.modules (types are recorded on modules)."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]  # the types those modules registered go with them


def run_tasks(hub, *fns, timeout: float = 10) -> None:
    """Spawn each function as a task and run the hub until all of them returned."""
    left = [len(fns)]

    def wrap(fn):
        fn()
        left[0] -= 1

    for fn in fns:
        hub.spawn(wrap, fn)
    assert hub.run_until(lambda: left[0] == 0, timeout=timeout), "tasks did not finish"
