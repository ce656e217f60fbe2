"""Template trees, their ``##NAME##`` placeholders, and writing a project in one step.

Contracts
---------
* A placeholder is a match of :data:`PLACEHOLDER` (MegFlow's ``##[_\\-a-zA-Z0-9]*##``) in a text
  file. ``####`` (no name) is a Markdown heading, not a placeholder, and is left alone. A text file
  is one without NUL bytes that decodes as UTF-8; other files, and all file names, are copied as
  they are.
* :func:`read_tree` reads a template directory (``.git`` and ``__pycache__`` left out) into a
  :class:`Tree`: relative path -> bytes, with each file's mode.
* :func:`placeholders` lists the names in a tree in order of first appearance (files in path order).
* :func:`fill` replaces every placeholder; a name missing from ``values`` is a ``KeyError`` (the
  dialog asks for all of them first).
* :func:`write_project` writes a tree to a directory that does not exist or is empty: the files go
  to a hidden sibling first, which is then renamed into place, so a failure leaves nothing behind.
* :func:`builtin_tree` is the template shipped for a project type, under ``templates/<type>/``
  next to this module (package data; nothing is fetched).
* :func:`with_schema` adds the config's JSON Schema (``megflow.schema.json``) to a tree whose
  ``config.toml`` names it on its first line (``#:schema ./megflow.schema.json``), so that TOML
  editors validate and complete the project's config.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PLACEHOLDER", "Tree", "read_tree", "builtin_tree", "placeholders", "fill", "write_project",
           "with_schema", "TEMPLATE_DIR"]

PLACEHOLDER = re.compile(r"##[_\-a-zA-Z0-9]*##")
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
_SKIP = {".git", "__pycache__"}


@dataclass
class Tree:
    """Files of a template or project: ``files`` maps a relative POSIX path to its bytes,
    ``modes`` to its permission bits (kept, so scripts stay executable)."""

    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)

    def text(self, path: str) -> str | None:
        """The file as text, or ``None`` when it is binary (NUL bytes, or not UTF-8)."""
        data = self.files[path]
        if b"\0" in data:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None


def read_tree(root: Path) -> Tree:
    """Every regular file under ``root`` except ``.git`` and ``__pycache__``; symlinks are refused
    (a template must not point outside itself)."""
    tree = Tree()
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP)
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                raise ValueError(f"{rel}: the template holds a symbolic link; only regular files are copied")
            tree.files[rel] = p.read_bytes()
            tree.modes[rel] = p.stat().st_mode & 0o777
    return tree


def builtin_tree(kind: str) -> Tree:
    """The shipped template of project type ``kind`` (``modelserving``, ``image``, ``video``, ``custom``)."""
    root = TEMPLATE_DIR / kind
    if not root.is_dir():
        raise FileNotFoundError(f"no template for project type {kind!r} in {TEMPLATE_DIR}")
    return read_tree(root)


def _names(text: str) -> list[str]:
    return [m.group(0)[2:-2] for m in PLACEHOLDER.finditer(text) if m.group(0) != "####"]


def placeholders(tree: Tree) -> list[str]:
    """Placeholder names (without ``##``) in order of first appearance."""
    seen: dict[str, None] = {}
    for path in sorted(tree.files):
        text = tree.text(path)
        if text is not None:
            seen.update(dict.fromkeys(_names(text)))
    return list(seen)


def fill(tree: Tree, values: dict[str, str]) -> Tree:
    """A copy of ``tree`` with every placeholder replaced by ``values[name]``."""
    out = Tree(modes=dict(tree.modes))

    def sub(m: re.Match) -> str:
        token = m.group(0)
        return token if token == "####" else values[token[2:-2]]

    for path, data in tree.files.items():
        text = tree.text(path)
        out.files[path] = data if text is None else PLACEHOLDER.sub(sub, text).encode("utf-8")
    return out


def with_schema(tree: Tree) -> Tree:
    """``tree`` plus ``megflow.schema.json`` (the built-in node types' schema) when its ``config.toml``
    starts with ``#:schema ./megflow.schema.json``; otherwise ``tree`` itself."""
    from ..config.json_schema import FILE_NAME, schema_text
    from ..registry import builtin_registry

    text = tree.text("config.toml") or ""
    if text.split("\n", 1)[0].strip() != f"#:schema ./{FILE_NAME}":
        return tree
    out = Tree(files=dict(tree.files), modes=dict(tree.modes))
    out.files[FILE_NAME] = schema_text(builtin_registry()).encode("utf-8")
    return out


def write_project(tree: Tree, target: Path) -> None:
    """Write ``tree`` as directory ``target`` (absent or empty); all files appear at once or none."""
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} exists and is not an empty directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for rel, data in tree.files.items():
            p = staging / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            p.chmod(tree.modes.get(rel, 0o644))
        staging.chmod(0o777 & ~_umask())
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
