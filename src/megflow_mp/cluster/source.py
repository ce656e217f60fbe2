"""What every machine needs to build the same app: the config's text, its plugin directories, variables.

The driver sends an :class:`AppSource` to each machine's host; the host loads the app from it and
checks, with :func:`fingerprint`, that it got the very graph the driver planned (same processes,
same channels), so a machine with other plugin files is a clear error, not a wrong wiring.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class AppSource:
    config: str  # the config's path on the driver (names it in errors; base of its relative paths)
    text: str  # the config file's text (a template when ``variables`` are given)
    plugins: tuple[str, ...] = ()  # plugin directories, absolute: the same paths must exist on every machine
    module_path: tuple[str, ...] = ()
    variables: dict = field(default_factory=dict)
    cwd: str = ""  # the driver's working directory (relative model paths): the hosts work there too

    @classmethod
    def of(cls, config, plugins, module_path=(), dynamic=None) -> "AppSource":
        """The source of an app loaded by :func:`megflow_mp.project.load_app` from these arguments."""
        from ..config import load_variables

        path = Path(config).resolve()
        variables = load_variables(dynamic) if dynamic is not None else {}
        return cls(str(path), path.read_text(), tuple(str(Path(p).resolve()) for p in plugins),
                   tuple(str(Path(m).resolve()) for m in module_path), dict(variables), os.getcwd())

    def load(self):
        """The app (``App``), loaded as the driver loaded it (in the driver's working directory,
        which must exist on this machine too)."""
        from ..project import load_app

        if self.cwd:
            os.chdir(self.cwd)
        app, _, _ = load_app(self.config, [Path(p) for p in self.plugins], list(self.module_path),
                             variables=self.variables or None, text=self.text)
        return app


def fingerprint(app) -> str:
    """A digest of what the runtime depends on: processes, declarations, channels, placements."""
    h = hashlib.sha256()
    h.update(repr(app.procs).encode())
    h.update(repr(sorted((k, d.cloned) for k, d in app.decls.items())).encode())
    h.update(repr(sorted(app.shared_chans.items())).encode())
    h.update(repr(sorted(app.templates)).encode())
    return h.hexdigest()[:16]
