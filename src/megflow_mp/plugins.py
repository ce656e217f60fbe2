"""Import the plugins of an app (``-p DIR``, repeatable) and build its Registry.

Contract: every ``.py`` file and every package directly under the plugin directory is imported
(a directory that is itself a package is imported as that package, with its submodules).
``module_path`` entries are put on ``sys.path`` first. Any failure to import raises
:class:`PluginError` naming the file, with the traceback, before any worker process starts.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

from .errors import PluginError
from .registry import Registry, builtin_registry

_ENGINE_DIR = str(Path(__file__).resolve().parent)


def _module_file(exc: BaseException, fallback: Path) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename
    tb = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(tb):  # the innermost frame of the plugin's own code
        name = frame.filename
        if not name.startswith("<") and "importlib" not in name and not name.startswith(_ENGINE_DIR):
            return name
    return str(fallback)


def _import(name: str, file: Path) -> str:
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() != file.resolve():
        # same module name from another plugin directory (another app in this process): reload
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]  # its types (recorded on the module) go with it
    try:
        importlib.import_module(name)
    except BaseException as exc:  # noqa: BLE001 - any failure of user code is reported the same way
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise PluginError(f"failed to import plugin module {name!r}", file=_module_file(exc, file),
                          detail=detail) from None
    return name


def _children(directory: Path) -> list[tuple[str, Path]]:
    out = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith((".", "_")) and entry.name != "__init__.py":
            continue
        if entry.suffix == ".py" and entry.name != "__init__.py":
            out.append((entry.stem, entry))
        elif entry.is_dir() and (entry / "__init__.py").exists():
            out.append((entry.name, entry / "__init__.py"))
    return out


def import_plugins(plugin_dir: str | os.PathLike, module_path: list[str] | None = None) -> list[str]:
    """Import the plugin modules under ``plugin_dir``; return the imported module names."""
    root = Path(plugin_dir).resolve()
    if not root.is_dir():
        raise PluginError(f"plugin directory {str(plugin_dir)!r} does not exist", file=str(plugin_dir))
    for extra in module_path or []:
        p = str(Path(extra).resolve())
        if p not in sys.path:
            sys.path.insert(0, p)
    names: list[str] = []
    if (root / "__init__.py").exists():
        parent = str(root.parent)
        if parent not in sys.path:
            sys.path.insert(0, parent)
        names.append(_import(root.name, root / "__init__.py"))
        prefix = root.name + "."
    else:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        prefix = ""
    for name, file in _children(root):
        names.append(_import(prefix + name, file))
    # submodules that the imported packages imported themselves count too (their decorators ran)
    packages = tuple(n + "." for n in names)
    names += [m for m in list(sys.modules) if m.startswith(packages) and m not in names]
    return names


def load_registry(plugin_dirs, module_path: list[str] | None = None) -> Registry:
    """The built-in types plus every type that the plugins under ``plugin_dirs`` register.

    ``plugin_dirs``: one directory, a sequence of them (imported in order; a type registered by two
    of them is a ``PluginError``), or None.
    """
    reg = builtin_registry()
    if plugin_dirs is None:
        return reg
    if isinstance(plugin_dirs, (str, os.PathLike)):
        plugin_dirs = [plugin_dirs]
    for plugin_dir in plugin_dirs:
        reg.add_modules(import_plugins(plugin_dir, module_path))
    return reg
