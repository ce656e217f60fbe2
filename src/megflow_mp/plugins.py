"""Import the plugins of an app (``-p PATH``, repeatable, or the config's ``plugins``) and build its Registry.

Contract:

* A plugin path is a directory or a single ``.py`` file. Of a directory, every ``.py`` file and
  every package directly under it is imported, except names starting with ``_`` or ``.`` (a
  directory that is itself a package is imported as that package, with its submodules).
* The running program's own file (``__main__``'s file, and ``sys.argv[0]`` resolved) is never
  imported as a plugin: a driver script beside its plugins (``Graph(plugin_path=".")``) does not
  run a second time. Its node types reach the app another way (``Graph`` adds ``__main__``'s).
* A module that registers no node or resource type (neither it nor, for a package, its
  submodules) and that no other plugin module uses is logged as one warning naming it: importing
  it ran its top level, so a stray script in a plugin folder shows. Scripts guard their work with
  ``if __name__ == "__main__":``; helpers start with ``_`` or are imported by the nodes that use them.
* ``module_path`` entries are put on ``sys.path`` first. Any failure to import raises
  :class:`PluginError` naming the file, with the traceback, before any worker process starts.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
import types
from pathlib import Path

from .errors import PluginError
from .registry import Registry, builtin_registry, module_types

_ENGINE_DIR = str(Path(__file__).resolve().parent)
log = logging.getLogger("megflow_mp.plugins")


def program_files() -> set[Path]:
    """The running program's own file(s): ``__main__``'s ``__file__`` and ``sys.argv[0]``, resolved.

    These are never imported as plugins (the program is already running them)."""
    files = set()
    main = sys.modules.get("__main__")
    for candidate in (getattr(main, "__file__", None), sys.argv[0] if sys.argv else None):
        if candidate and candidate not in ("-c", "-m", "-"):
            try:
                path = Path(candidate).resolve()
            except OSError:
                continue
            if path.is_file():
                files.add(path)
    return files


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
    skip = program_files()
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith((".", "_")) and entry.name != "__init__.py":
            continue
        if entry.suffix == ".py" and entry.name != "__init__.py":
            if entry.resolve() not in skip:
                out.append((entry.stem, entry))
        elif entry.is_dir() and (entry / "__init__.py").exists():
            out.append((entry.name, entry / "__init__.py"))
    return out


def _registers(name: str) -> bool:
    """Whether module ``name`` (or, for a package, one of its imported submodules) registered a type."""
    prefix = name + "."
    return any(module_types(m) for m in list(sys.modules) if m == name or m.startswith(prefix))


def _used(name: str, others: list[str]) -> bool:
    """Whether another plugin module holds module ``name`` or something defined in it (a helper)."""
    module = sys.modules.get(name)
    owned = {id(v) for k, v in vars(module or object).items()  # its own objects (a list, an array, a class)
             if not k.startswith("__")
             and not isinstance(v, (types.ModuleType, str, bytes, int, float, complex, bool, type(None)))
             and getattr(v, "__module__", name) == name}
    for other in others:
        if other == name or name.startswith(other + "."):
            continue  # a package holds its submodules as attributes: that is no use
        for key, value in list(vars(sys.modules.get(other) or object).items()):
            if not key.startswith("__") and (value is module or id(value) in owned):
                return True
    return False


def _warn_idle(imported: list[tuple[str, Path]], names: list[str]) -> None:
    for name, file in imported:
        if not _registers(name) and not _used(name, names):
            log.warning("plugin module %r (%s) registers no node type: importing it ran its top level; a script "
                        "guards its work with `if __name__ == \"__main__\":` or lives outside the plugin folder",
                        name, file)


def _on_path(*paths) -> None:
    for p in reversed([str(Path(x).resolve()) for x in paths]):
        if p not in sys.path:
            sys.path.insert(0, p)


def import_plugins(plugin_dir: str | os.PathLike, module_path: list[str] | None = None) -> list[str]:
    """Import the plugin modules of ``plugin_dir`` (a directory or one ``.py`` file); return the
    imported module names. See the module docstring for which files count."""
    root = Path(plugin_dir).resolve()
    _on_path(*(module_path or []))
    if root.is_file() and root.suffix == ".py":
        if root in program_files():
            return []
        if str(root.parent) not in sys.path:
            sys.path.insert(0, str(root.parent))
        names = [_import(root.stem, root)]
        _warn_idle([(root.stem, root)], names)
        return names
    if not root.is_dir():
        what = "plugin file" if root.suffix == ".py" else "plugin directory"
        raise PluginError(f"{what} {str(plugin_dir)!r} does not exist", file=str(plugin_dir))
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
    children = [(prefix + name, file) for name, file in _children(root)]
    for name, file in children:
        names.append(_import(name, file))
    # submodules that the imported packages imported themselves count too (their decorators ran)
    packages = tuple(n + "." for n in names)
    names += [m for m in list(sys.modules) if m.startswith(packages) and m not in names]
    _warn_idle(children, names)
    return names


def load_registry(plugin_dirs, module_path: list[str] | None = None) -> Registry:
    """The built-in types plus every type that the plugins under ``plugin_dirs`` register.

    ``plugin_dirs``: one directory or ``.py`` file, a sequence of them (imported in order; a type
    registered by two of them is a ``PluginError``), or None.
    """
    reg = builtin_registry()
    if plugin_dirs is None:
        return reg
    if isinstance(plugin_dirs, (str, os.PathLike)):
        plugin_dirs = [plugin_dirs]
    for plugin_dir in plugin_dirs:
        reg.add_modules(import_plugins(plugin_dir, module_path))
    return reg
