"""Shared helpers of the unit tests.

- ``isolated_imports``: a fixture that undoes what importing plugins does to ``sys.path``,
  ``sys.modules`` (and so the types those modules registered) (use it with ``pytestmark`` or ``usefixtures``).
- :func:`run_tasks`: spawn functions as tasks of a hub and run it until all of them returned.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import pytest

import megflow_mp


# modules imported from here stay imported: libraries (a native extension such as cv2 cannot be
# initialised twice in one process) and the engine itself (a second copy of a module would make
# second copies of its classes)
_KEEP = tuple(str(Path(p).resolve()) for p in {*sysconfig.get_paths().values(), Path(megflow_mp.__file__).parent})


def _plugin_module(module) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and not str(Path(file).resolve()).startswith(_KEEP)


@pytest.fixture
def isolated_imports():
    """Undo what importing plugins does to sys.path and sys.modules (types are recorded on modules):
    plugin modules imported during the test are forgotten, libraries and the engine are kept."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if _plugin_module(sys.modules[name]):
            del sys.modules[name]  # the types it registered go with it


def run_tasks(hub, *fns, timeout: float = 10) -> None:
    """Spawn each function as a task and run the hub until all of them returned."""
    left = [len(fns)]

    def wrap(fn):
        fn()
        left[0] -= 1

    for fn in fns:
        hub.spawn(wrap, fn)
    assert hub.run_until(lambda: left[0] == 0, timeout=timeout), "tasks did not finish"
