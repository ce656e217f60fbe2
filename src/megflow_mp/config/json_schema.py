"""The JSON Schema of a config file, for editors (``megflow-mp schema``).

Made from the config models (:mod:`.schema`) and the arguments each node type declares
(:mod:`megflow_mp.nodeargs`): a node entry whose ``ty`` names a type with declared arguments takes
those and the engine's keys only (an ``if``/``then`` on ``ty`` per type), with their types, bounds,
allowed values, defaults and descriptions; a node whose ``ty`` names a graph, or a plugin type that
declares nothing, takes any keys. TOML editors that read JSON Schema (taplo, VS Code's Even Better
TOML) validate and complete a file whose first line is ``#:schema ./megflow.schema.json``.

The schema describes what one file may hold: ``main`` is not required by it (an included file has
none), though the loader requires it of the merged config.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ..nodeargs import ENGINE_KEYS
from ..registry import Registry
from .schema import MAX_CLONED, Config

DIALECT = "https://json-schema.org/draft/2020-12/schema"
FILE_NAME = "megflow.schema.json"  # what quickstart projects ship, named by their config's first line

_ENGINE_PROPS = {
    "restart": {"type": "integer", "minimum": 0,
                "description": "times within 60 s a worker that ended is started again (0: never)"},
    "placement": {
        "type": "object", "additionalProperties": False,
        "description": "what each replica needs on a Ray cluster (--ray)",
        "properties": {
            "num_cpus": {"type": "number", "minimum": 0},
            "num_gpus": {"type": "number", "minimum": 0},
            "resources": {"type": "object", "additionalProperties": {"type": "number", "exclusiveMinimum": 0}},
        },
    },
}


def config_schema(registry: Registry) -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of a config that may use the node types of ``registry``."""
    schema = _tidy(Config.model_json_schema())
    schema = {"$schema": DIALECT, "title": "megflow-mp config",
              "description": "A megflow-mp (MegFlow) graph config; see `megflow-mp nodes` for the node types.",
              **{k: v for k, v in schema.items() if k != "title"}}
    schema["required"] = [r for r in schema.get("required", []) if r != "main"]
    defs = schema.setdefault("$defs", {})
    node = defs["Node"]
    node["properties"].update(copy.deepcopy(_ENGINE_PROPS))
    node["properties"]["cloned"].setdefault("maximum", MAX_CLONED)
    node["properties"]["ty"]["examples"] = sorted(registry.nodes)
    node["properties"]["ty"]["description"] = "a node type (megflow-mp nodes) or a graph name ('A|B': several)"
    rules = []
    for name, ntype in sorted(registry.nodes.items()):
        if ntype.args is None:
            continue
        args = _tidy(ntype.args.model_json_schema())
        for def_name, definition in args.pop("$defs", {}).items():
            if defs.get(def_name, definition) != definition:
                raise ValueError(f"two argument models define {def_name!r} differently")  # pragma: no cover
            defs[def_name] = definition
        props = {k: True for k in ENGINE_KEYS}
        props.update(args.get("properties", {}))
        then = {"properties": props, "additionalProperties": False}
        if args.get("required"):
            then["required"] = args["required"]
        if args.get("description"):
            then["description"] = args["description"]
        rules.append({"if": {"properties": {"ty": {"const": name}}, "required": ["ty"]}, "then": then})
    if rules:
        node["allOf"] = rules
    return schema


def _tidy(schema: Any) -> Any:
    """``schema`` without what TOML cannot say: ``null`` alternatives and ``null`` defaults."""
    if isinstance(schema, list):
        return [_tidy(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _tidy(v) for k, v in schema.items()}
    if "anyOf" in out:
        kept = [s for s in out["anyOf"] if s != {"type": "null"}]
        if len(kept) == 1:
            del out["anyOf"]
            out = {**kept[0], **out}
        else:
            out["anyOf"] = kept
    if "default" in out and out["default"] is None:
        del out["default"]
    return out


def schema_text(registry: Registry) -> str:
    """:func:`config_schema` as the text of a ``.json`` file."""
    return json.dumps(config_schema(registry), indent=2) + "\n"
