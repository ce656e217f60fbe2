"""Node arguments: each node type's declared arguments, checked before anything runs.

A node type declares its arguments once, as a pydantic model given to ``@register(args=Model)``:
each field is an argument (its type, default, bounds or allowed values, and a one-line
``description``). Built-in types subclass :class:`NodeArgs` (strict: TOML values are typed, so
``"8080"`` is not a port; frozen). From that one declaration:

* ``check`` and ``run`` refuse a node entry whose own arguments the model does not take
  (:func:`args_problem`: an unknown argument with the closest known one, a wrong type, a value out
  of bounds), naming the file and the TOML path ``graphs[1].nodes[0].prot``;
* the node reads its validated arguments with :meth:`NodeArgs.of` (or :func:`read_args`);
* ``megflow-mp nodes`` prints a table of them (:func:`arg_rows`) and ``megflow-mp schema`` puts the
  model's JSON Schema in the config's (:mod:`megflow_mp.config.json_schema`).

What is never an argument: the engine's keys of a node entry (:data:`ENGINE_KEYS`). What is not
checked against the model: the arguments a subgraph-typed node passes down to the nodes of its
graph (MegFlow's rule: they reach every inner node, which keeps the ones it takes), so
:meth:`NodeArgs.of` ignores keys it does not declare. A plugin node type that declares no model
keeps MegFlow's free-form arguments (a dict, nothing checked).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

ENGINE_KEYS = ("name", "ty", "cloned", "res", "restart", "placement")  # read by the engine, never a node's


def _one_or_many(value):
    return [value] if isinstance(value, str) else value


# a string or a list of strings (MegFlow's ``urls = "x"`` and ``urls = ["x", "y"]``), read as a list
StrList = Annotated[list[str], BeforeValidator(_one_or_many, json_schema_input_type=str | list[str])]


class NodeArgs(BaseModel):
    """Base of a node type's argument model: strict, frozen, unknown fields refused."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    @classmethod
    def of(cls, args: Mapping[str, Any], what: str = ""):
        """The validated arguments in ``args`` (a node's ``args`` dict as the engine passes it).

        Keys the model does not declare are left out: the engine's own keys and the arguments a
        subgraph node passes down (``check`` has refused a node's own unknown arguments already).
        Raises ``ValueError``, one line naming the argument (and the node: ``what``, e.g.
        ``"VideoServer 'server'"``), for a wrong value."""
        return read_args(cls, args, what)


def read_args(model: type[BaseModel], args: Mapping[str, Any], what: str = ""):
    """``model`` validated from the keys of ``args`` it declares (see :meth:`NodeArgs.of`)."""
    given = {k: v for k, v in args.items() if k in model.model_fields}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        loc, message = _explain_first(model, given, exc)
        where = f"{what}: {_path(loc)}" if what else f"argument {_path(loc)}"
        raise ValueError(f"{where}: {message}") from None


def args_problem(model: type[BaseModel], args: Mapping[str, Any], what: str) -> tuple[tuple, str] | None:
    """What is wrong with a node entry's own ``args`` (engine keys taken out) for ``model``:
    ``(location of the bad argument in the entry, message)``, or None when they are fine.
    ``what`` names the node in messages (``VideoServer 'server'``)."""
    fields = list(model.model_fields)
    for key in args:
        if key not in model.model_fields:
            return (key,), f"unknown argument {key!r} of {what}{suggestion(key, fields + list(ENGINE_KEYS[2:]), fields)}"
    try:
        model.model_validate(dict(args))
    except ValidationError as exc:
        return _explain_first(model, args, exc)
    return None


def suggestion(key: str, candidates: list[str], fields: list[str]) -> str:
    """``"; did you mean 'port'?"``, or the list of ``fields`` when nothing is close."""
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close:
        close = [c for c in candidates if c.lower() == key.lower() or c.replace("_", "") == key.replace("_", "")][:1]
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (it takes: {', '.join(fields)})" if fields else " (it takes no arguments)"


_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "string_type": "a string",
    "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list",
    "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table",
    "literal_error": None, "none_required": "nothing",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_BOUND_KEYS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def describe_value(value: Any) -> str:
    """A value as a user wrote it in TOML, for "got ..." messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _explain_first(model: type[BaseModel], args: Mapping[str, Any], exc: ValidationError) -> tuple[tuple, str]:
    """``(location, message)`` of the first error of ``exc``, in plain words."""
    errors = exc.errors()
    err = errors[0]
    loc = [p for p in err["loc"]]
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    path = tuple(loc)
    if kind == "extra_forbidden":
        owner = _nested_fields(model, loc[:-1])
        return path, f"unknown field {loc[-1]!r}{suggestion(str(loc[-1]), owner, owner)}"
    if kind == "missing":
        return path, "required"
    if kind in _BOUNDS:
        bound = ctx[_BOUND_KEYS[kind]]
        return path, f"must be {_BOUNDS[kind]} {bound:g}, got {describe_value(value)}"
    if kind == "literal_error":
        return path, f"expected {ctx['expected']}, got {describe_value(value)}"
    if kind in ("too_short", "too_long"):
        return path, f"{err['msg'].lower()}"
    if kind == "value_error":
        return path, str(ctx.get("error", err["msg"]))
    top = loc[0] if loc else ""
    union = len([e for e in errors if e["loc"][:1] == err["loc"][:1]]) > 1 and len(loc) > 1 and isinstance(loc[1], str)
    if union and top in model.model_fields:  # str | list[str] and the like: say what the argument takes
        return (top,), f"expected {_type_words(model.model_fields[top].annotation)}, got {describe_value(args.get(top))}"
    if _EXPECTED.get(kind):
        return path, f"expected {_EXPECTED[kind]}, got {describe_value(value)}"
    return path, err["msg"]


def _path(loc: list) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _nested_fields(model: type[BaseModel], loc: list) -> list[str]:
    """The fields of the model found at ``loc`` inside ``model`` (for suggestions), else []."""
    from typing import get_args

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        current = fields[part].annotation
        for _ in range(3):  # list[X], X | None, Annotated[...]: find the model inside
            inner = [a for a in get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)]
            if inner:
                current = inner[0]
                break
            nested = [a for a in get_args(current) if get_args(a)]
            if not nested:
                break
            current = nested[0]
    return list(getattr(current, "model_fields", {}))


def _type_words(annotation) -> str:
    text = str(annotation)
    if "list[str]" in text and "str" in text:
        return "a string or a list of strings"
    return f"a value of type {text}"


# -- the reference (megflow-mp nodes, docs/nodes.md) ---------------------------------------------------------
def arg_rows(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, meaning)`` of each argument of ``model``, from its JSON Schema."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    rows = []
    for name, prop in schema.get("properties", {}).items():
        field = model.model_fields[name]
        default = "required" if field.is_required() else _toml(prop.get("default"))
        rows.append((name, schema_type(prop, defs), default, prop.get("description", "")))
    return rows


def schema_type(prop: dict, defs: dict) -> str:
    """A JSON Schema property in short words: ``int >= 1``, ``"tcp" | "udp"``, ``list[str]``."""
    if "$ref" in prop:
        target = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
        return "table" if target.get("type") == "object" else schema_type(target, defs)
    if "anyOf" in prop:
        parts = [schema_type(p, defs) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(dict.fromkeys(parts))
    if "enum" in prop:
        return " | ".join(_toml(v) for v in prop["enum"])
    if "const" in prop:
        return _toml(prop["const"])
    kind = prop.get("type")
    if kind == "array":
        return f"list[{schema_type(prop.get('items', {}), defs)}]" if prop.get("items") else "list"
    words = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "object": "table"}
    text = words.get(kind, kind or "any")
    bounds = [f"{op} {_num(prop[k])}" for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                    ("maximum", "<="), ("exclusiveMaximum", "<")) if k in prop]
    return f"{text} {', '.join(bounds)}" if bounds else text


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _toml(value) -> str:
    """A default as TOML writes it (``none`` for no value)."""
    import json

    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value).replace(": ", " = ") if value else ("[]" if isinstance(value, list) else "{}")
    return str(value)


class NoArgs(NodeArgs):
    """The model of a node type that takes no arguments (any argument given is refused)."""
