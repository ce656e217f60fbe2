"""An app on disk: a config file, the plugin directories it needs, its template variables -> ``App``.

Which config (:func:`config_file`): the file given; without one, MegFlow's rule
``<plugin dir>/<dirname>.toml`` for a single plugin directory.

Which plugin directories (:func:`plugin_dirs`), the first rule that gives any:

1. the directories given on the command line (``-p``, repeatable: all of them, in order);
2. the config's top-level ``plugins = [...]`` (each relative to the file that names it);
3. the config file's own directory, when it holds plugin modules (a ``.py`` file or a package);
4. none: the app uses built-in node types only.

Rules 1 and 2 may name single ``.py`` files as well as directories. Which modules of a directory are
imported (never the running program's own file; a module that registers nothing is a warning):
:mod:`megflow_mp.plugins`.

:func:`load_app` applies both and returns the resolved :class:`~megflow_mp.graph.App`; every failure
is a :class:`~megflow_mp.errors.MegFlowError` (config, plugin) that names the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .errors import ConfigError, UsageError

PathLike = str | os.PathLike


def config_file(config: PathLike | None, plugins: Sequence[PathLike] = ()) -> Path:
    """The config to load: ``config``, else ``<dir>/<dirname>.toml`` of the one plugin directory.

    Raises ``UsageError`` when neither rule names a file.
    """
    if config is not None:
        return Path(config)
    if len(plugins) == 1:
        plugin = Path(plugins[0])
        return plugin / f"{plugin.resolve().name}.toml"
    given = "several plugin directories" if plugins else "no plugin directory"
    raise UsageError(f"no config file given ({given}): name one, e.g. `megflow-mp run configs/app/app.toml`")


def holds_plugins(directory: Path) -> bool:
    """True when ``directory`` has a plugin module: a ``.py`` file or a package (not ``_``-prefixed)."""
    if not directory.is_dir():
        return False
    for entry in directory.iterdir():
        if entry.name.startswith((".", "_")):
            continue
        if entry.suffix == ".py" or (entry.is_dir() and (entry / "__init__.py").exists()):
            return True
    return False


def plugin_dirs(given: Sequence[PathLike], named: Sequence[str], config: Path) -> list[Path]:
    """The plugin directories of an app, by the rules in the module docstring.

    ``given``: from the command line; ``named``: the config's ``plugins`` (already resolved by the
    loader); ``config``: the config file's path.
    """
    if given:
        return [Path(p) for p in given]
    if named:
        return [Path(p) for p in named]
    own = config.parent
    return [own] if holds_plugins(own) else []


def load_app(config: PathLike | None = None, plugins: Sequence[PathLike] = (), module_path: Sequence[str] = (),
             dynamic: PathLike | None = None, variables: dict | None = None, text: str | None = None,
             extra_modules: Sequence[str] = ()):
    """Load, check and resolve an app; see the module docstring for which files are used.

    ``text`` is the config itself (``config`` then only names it in errors and is the base of its
    relative paths; it need not exist, and its folder is not taken for a plugin directory).
    ``variables`` (merged over ``dynamic``'s) make the config a template. ``extra_modules``: already
    imported modules whose node types the app may use too (a program's own). Returns
    ``(App, config path, plugin directories)``.
    """
    from .config import load_config, load_config_string
    from .graph import build_app
    from .plugins import load_registry

    path = config_file(config, plugins)
    if text is None:
        cfg = load_config(path, dynamic=dynamic, variables=variables)
    else:
        if dynamic is not None:
            from .config import load_variables

            variables = {**load_variables(dynamic), **(variables or {})}
        cfg = load_config_string(text, str(path), variables, base_dir=path.parent)
    if plugins or cfg.plugins or text is None:
        dirs = plugin_dirs(plugins, cfg.plugins, path)
    else:
        dirs = []
    for i, d in enumerate(dirs):
        if not plugins and not d.is_dir() and not (d.suffix == ".py" and d.is_file()):
            what = "plugin file" if d.suffix == ".py" else "plugin directory"
            raise ConfigError(f"{what} not found: {d}", file=str(path), path=f"plugins[{i}]")
    registry = load_registry(dirs, list(module_path))
    registry.add_modules(extra_modules)
    return build_app(cfg, registry, str(path)), path, dirs
