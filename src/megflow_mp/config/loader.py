"""Read config files: render templates, parse TOML, merge includes, validate into a ``Config``.

Every failure is one :class:`~megflow_mp.errors.ConfigError` whose ``file`` is the file the bad value
came from (an included file for an entry it contributed) and whose ``path`` is the TOML path inside
that file (``graphs[0].nodes[1].ty``). Pipeline, per file: read -> render (when variables are given
or the text has ``{{`` / ``{%``) -> TOML parse -> append its ``resources``/``nodes``/``graphs`` to the
merged document -> load its includes depth-first. The merged document is validated once, so name
clashes between files are found too.

A file renders in one of two template dialects, chosen per file by
:func:`~megflow_mp.config.templar.detect_dialect`: MegFlow's templar (``{% end for %}``,
``{{ x = 1 }}``, see :mod:`.templar`) or jinja2. A file with marks of neither (only ``{{ expr }}``)
is rendered both ways: the rendering that is valid TOML wins, and two valid renderings that mean
different documents are an error asking for a ``{# dialect: templar #}`` / ``{# dialect: jinja #}``.
"""

from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from . import templar
from .schema import Config, format_path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["load_config", "load_config_string", "load_variables"]

LIST_KEYS = ("resources", "nodes", "graphs")
MAX_BYTES = 16 << 20  # a config or variables file larger than this is refused
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "string_type": "a string",
    "list_type": "a list",
    "bool_type": "a boolean",
    "float_type": "a number",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def load_config(
    path: str | os.PathLike,
    dynamic: str | os.PathLike | None = None,
    variables: dict[str, Any] | None = None,
) -> Config:
    """Load the config at ``path``; includes are resolved relative to each including file.

    ``dynamic`` is a TOML file of template variables, merged with ``variables`` (which win); when
    either is given every file is rendered as a template (templar or jinja2, see the module doc).
    Returns the validated, merged ``Config``. Raises ``ConfigError`` for a missing or unreadable file,
    a template or TOML error, an include problem (missing file, cycle) or a schema violation.
    """
    merged: dict[str, Any] | None = None
    if dynamic is not None:
        merged = load_variables(dynamic)
    if variables is not None:
        merged = {**(merged or {}), **variables}
    file = os.fspath(path)
    text = _read(file, file, "", "config file")
    return _Loader(merged, file, os.path.dirname(file) or ".").run(text)


def load_variables(path: str | os.PathLike) -> dict[str, Any]:
    """The template variables in the TOML file at ``path`` (``--dynamic``); ``ConfigError`` if unreadable."""
    file = os.fspath(path)
    return _parse_toml(_read(file, file, "", "variables file"), file, False)


def load_config_string(
    text: str,
    file: str = "<string>",
    variables: dict[str, Any] | None = None,
    base_dir: str | os.PathLike = ".",
) -> Config:
    """Load a config from ``text``; ``file`` names it in errors, includes resolve against ``base_dir``.

    Same contract as :func:`load_config` (``variables`` given means: render as a template).
    """
    return _Loader(variables, file, os.fspath(base_dir)).run(text)


def _read(path: str, err_file: str, err_path: str, what: str) -> str:
    """Return the text at ``path``; raise ``ConfigError`` located at ``err_file``/``err_path``."""
    where = "" if path == err_file else f": {path}"
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)  # bounded: an endless file (/dev/zero, a pipe) ends here
        if len(data) > MAX_BYTES:
            raise ConfigError(f"{what} is larger than {MAX_BYTES >> 20} MiB{where}", file=err_file, path=err_path)
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads it
    except FileNotFoundError:
        raise ConfigError(f"{what} not found{where}", file=err_file, path=err_path) from None
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        column = exc.start - exc.object.rfind(b"\n", 0, exc.start)
        raise ConfigError(f"cannot read {what}{where}: not UTF-8 at line {line}, column {column} "
                          f"(byte 0x{exc.object[exc.start]:02x})", file=err_file, path=err_path) from None
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot read {what}{where}: {reason}", file=err_file, path=err_path) from None


def _parse_toml(text: str, file: str, rendered: bool) -> dict[str, Any]:
    """Parse TOML; a syntax error becomes ``ConfigError`` with the parser's line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = str(exc)
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)", reason)
        at = ""
        if found:
            at = f" at line {found.group(1)}, column {found.group(2)}"
            reason = reason[: found.start()] + reason[found.end():]
        elif "(at end of document)" in reason:  # the file ends inside a string, table, key, ...
            last = text.rsplit("\n", 1)[-1]
            at = f" at line {text.count(chr(10)) + 1}, column {len(last) + 1} (the end of the file)"
            reason = reason.replace(" (at end of document)", "")
        note = " (of the rendered template)" if rendered and at else ""
        raise ConfigError(f"TOML syntax error{at}{note}: {reason}", file=file) from None


def _render(text: str, file: str, variables: dict[str, Any]) -> str:
    """Render ``text`` in its dialect (see the module doc); any template failure is a ``ConfigError``."""
    dialect = templar.detect_dialect(text, file)
    if dialect == "templar":
        return templar.render(text, variables, file)
    if dialect == "jinja":
        return _render_jinja(text, file, variables)
    return _render_either(text, file, variables)


def _render_either(text: str, file: str, variables: dict[str, Any]) -> str:
    """Render a file with no dialect marks both ways; keep the rendering that is valid TOML.

    Both valid but different documents: ``ConfigError``. Neither valid: the jinja2 rendering (its TOML
    error is reported by the caller), or the templar one when only that rendered, else jinja2's error.
    """
    results = []  # per dialect: (rendered text or None, its TOML document or None, error or None)
    for render in (_render_jinja, lambda t, f, v: templar.render(t, v, f)):
        try:
            out = render(text, file, variables)
        except ConfigError as exc:
            results.append((None, None, exc))
            continue
        try:
            results.append((out, tomllib.loads(out), None))
        except tomllib.TOMLDecodeError:
            results.append((out, None, None))
    (j_text, j_doc, j_err), (t_text, t_doc, _) = results
    if j_doc is not None and t_doc is not None and j_doc != t_doc:
        j_lines, t_lines = j_text.splitlines(), t_text.splitlines()
        at = next((i for i, (a, b) in enumerate(zip(j_lines, t_lines), 1) if a != b),
                  min(len(j_lines), len(t_lines)) + 1)
        raise ConfigError(f"this template means different things in templar (MegFlow) and in jinja2 (the "
                          f"renderings first differ at line {at}); mark it with {{# dialect: templar #}} or "
                          f"{{# dialect: jinja #}}", file=file)
    if (t_doc is not None and j_doc is None) or (j_text is None and t_text is not None):
        return t_text
    if j_err is not None:
        raise j_err
    return j_text


def _render_jinja(text: str, file: str, variables: dict[str, Any]) -> str:
    """Render ``text`` with jinja2 (``StrictUndefined``); any template failure is a ``ConfigError``."""
    import jinja2  # only jinja configs pay for it

    served = []

    def load(name: str):
        if served:  # {% include %}, {% import %}, {% extends %}: the config's own include = [...] does that
            raise jinja2.TemplateNotFound(name, f"a config template cannot include, import or extend another "
                                                f"template ({name!r}); list config files in include = [...]")
        served.append(name)
        return text, file, lambda: True

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             loader=jinja2.FunctionLoader(load), cache_size=0)  # every load asks load()
    try:
        return env.get_template(file).render(variables)
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"template error{_template_line(exc, file)}: {exc.message}", file=file) from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"template syntax error at line {exc.lineno}: {exc.message}", file=file) from None
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"undefined template variable{_template_line(exc, file)}: {exc.message}", file=file) from None
    except Exception as exc:  # user template code: filters, arithmetic, ...
        detail = f"{type(exc).__name__}: {exc}"
        raise ConfigError(f"template error{_template_line(exc, file)}: {detail}", file=file) from None


def _template_line(exc: BaseException, file: str) -> str:
    """`` at line N`` for the innermost template frame of ``exc``'s traceback, else ``""``."""
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == file]
    return f" at line {lines[-1]}" if lines else ""


def _describe(value: Any) -> str:
    """A value as a user wrote it in TOML, for "got ..." messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The schema model that the object at ``loc`` (from the top of a ``Config``) validates against."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        model = fields[part].annotation
        while get_origin(model) is list or (get_args(model) and type(None) in get_args(model)):
            model = next(a for a in get_args(model) if a is not type(None))  # list[X] or X | None: X
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _explain(err: dict[str, Any], errors: list[dict[str, Any]]) -> str:
    """Plain-words message for one pydantic error (not a ``config_check`` one)."""
    kind, loc, ctx, value = err["type"], tuple(err["loc"]), err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = f" (allowed: {', '.join(model.model_fields)})" if model else ""
        return f"unknown field {loc[-1]!r}{allowed}"
    if kind == "missing":
        typos = [e["loc"][-1] for e in errors if e["type"] == "extra_forbidden" and tuple(e["loc"][:-1]) == loc[:-1]]
        hint = f" (unknown field(s) given: {', '.join(map(repr, typos))}; a typo?)" if typos else ""
        return f"field required{hint}"
    if kind == "greater_than_equal":
        return f"expected an integer >= {ctx['ge']}, got {_describe(value)}"
    if kind == "less_than_equal":
        return f"expected an integer <= {ctx['le']}, got {_describe(value)}"
    if kind == "too_short":
        return f"expected at least {ctx['min_length']} entries, got {ctx['actual_length']}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_describe(value)}"
    return err["msg"]


@dataclass
class _Loader:
    """One load: the merged raw document plus where each part of it came from."""

    variables: dict[str, Any] | None
    root_file: str
    root_dir: str
    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # key -> [(file, own index)]
    key_files: dict[str, str] = field(default_factory=dict)  # other top-level key -> file

    def run(self, text: str) -> Config:
        """Load the root file and its includes, then validate; see :func:`load_config`."""
        root = os.path.join(self.root_dir, self.root_file)
        self._add(text, self.root_file, self.root_dir, (os.path.realpath(root),), (self._label(root),))
        try:
            config = Config.model_validate(self.data)
        except ValidationError as exc:
            raise self._translate(exc) from None
        config._origins = self.origins
        return config

    def _label(self, path: str) -> str:
        try:
            return os.path.relpath(path, self.root_dir)
        except ValueError:  # another drive
            return path

    def _add(self, text: str, file: str, base_dir: str, chain: tuple[str, ...], labels: tuple[str, ...]) -> None:
        """Merge one file, then its includes (``chain``: real paths from the root, for cycles)."""
        render = self.variables is not None or "{{" in text or "{%" in text
        if render:
            text = _render(text, file, self.variables or {})
        doc = _parse_toml(text, file, render)
        includes = doc.get("include", [])
        if not isinstance(includes, list):
            raise ConfigError(f"expected a list of file names, got {_describe(includes)}", file=file, path="include")
        self._merge(doc, file, base_dir, is_root=len(chain) == 1)
        for i, entry in enumerate(includes):
            where = f"include[{i}]"
            if not isinstance(entry, str):
                raise ConfigError(f"expected a string, got {_describe(entry)}", file=file, path=where)
            target = os.path.normpath(os.path.join(base_dir, entry))
            real, label = os.path.realpath(target), self._label(target)
            if real in chain:
                cycle = " -> ".join(labels[chain.index(real):] + (label,))
                raise ConfigError(f"include cycle: {cycle}", file=file, path=where)
            child = _read(target, file, where, f"included file {entry!r}")
            self._add(child, target, os.path.dirname(target) or ".", chain + (real,), labels + (label,))

    def _merge(self, doc: dict[str, Any], file: str, base_dir: str, is_root: bool) -> None:
        """Append ``doc``'s lists; keep the first value of any other key (``include``: root's only).

        ``plugins`` entries and ``auth.tokens`` are made relative to the working directory here, so
        a plugin directory or tokens file named by an included file is found next to that file."""
        for key, value in doc.items():
            if key == "plugins" and isinstance(value, list):
                value = [os.path.normpath(os.path.join(base_dir, v)) if isinstance(v, str) else v for v in value]
            if key == "auth" and isinstance(value, dict) and isinstance(value.get("tokens"), str):
                value = {**value, "tokens": os.path.normpath(os.path.join(base_dir, value["tokens"]))}
            if key in LIST_KEYS:
                if not isinstance(value, list):
                    raise ConfigError(f"expected a list of tables, got {_describe(value)}", file=file, path=key)
                self.data.setdefault(key, []).extend(value)
                self.origins.setdefault(key, []).extend((file, i) for i in range(len(value)))
            elif (key != "include" or is_root) and key not in self.data:
                self.data[key] = value
                self.key_files[key] = file

    def _locate(self, loc: tuple) -> tuple[str, str]:
        """Map a location in the merged document to ``(file, path inside that file)``."""
        if len(loc) >= 2 and loc[0] in self.origins and isinstance(loc[1], int):
            file, index = self.origins[loc[0]][loc[1]]
            return file, format_path((loc[0], index, *loc[2:]))
        file = self.key_files.get(loc[0], self.root_file) if loc else self.root_file
        return file, format_path(loc)

    def _translate(self, exc: ValidationError) -> ConfigError:
        """The first error of ``exc`` as a ``ConfigError`` at its file and path."""
        errors = exc.errors()
        err, loc = errors[0], tuple(errors[0]["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == "config_check":
            message = ctx["reason"]
            if "first_loc" in ctx:
                first_file, first_path = self._locate(loc + ctx["first_loc"])
                same = first_file == self._locate(loc + ctx["loc"])[0]
                message += f" (first defined at {first_path if same else f'{first_file}: {first_path}'})"
            loc += ctx["loc"]
        else:
            message = _explain(err, errors)
        file, path = self._locate(loc)
        return ConfigError(message, file=file, path=path)
