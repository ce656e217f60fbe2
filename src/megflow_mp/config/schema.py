"""Presentation layer of the config: pydantic models that mirror the TOML one-to-one.

Each model is frozen and strict (TOML values are typed, so ``"16"`` is not an integer).
``Config``, ``Graph``, ``Connection`` and ``NamedConn`` deny unknown fields; ``Node`` and
``Resource`` pass every other key through to the plugin constructor (see their ``args``).

Checks that need only one (merged) config and no plugin knowledge run here as validators: unique
names, well-formed port strings, ``main`` naming a graph. A failed check raises pydantic's
``ValidationError``; checks that span several fields raise a ``PydanticCustomError`` of type
``config_check`` whose ``ctx`` holds ``loc`` (the offending field, relative to the model that
raised it), ``reason`` (the plain-words message) and, for duplicates, ``first_loc`` (the earlier
definition, relative to the same model). :mod:`megflow_mp.config.loader` turns all of these into
one :class:`~megflow_mp.errors.ConfigError` with a TOML path and a file.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Iterable, Sequence

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from pydantic_core import PydanticCustomError

from .portref import PortRef

Loc = tuple  # a pydantic location: str keys and int list indices, e.g. ("graphs", 1, "name")


def format_path(loc: Iterable[str | int]) -> str:
    """Format a location as a TOML path: ``("graphs", 1, "nodes", 0)`` -> ``graphs[1].nodes[0]``.

    A key that is not a bare TOML key is quoted as TOML quotes it (``nodes[0]."a b"``), with
    characters that are not printable escaped, so a path is always one unambiguous line."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = str(part) if _BARE_KEY.fullmatch(str(part)) else _quote_key(str(part))
            out += f".{key}" if out else key
    return out


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _quote_key(key: str) -> str:
    def char(c: str) -> str:
        if c in '"\\':
            return "\\" + c
        if c.isprintable():
            return c
        return f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"

    return '"' + "".join(char(c) for c in key) + '"'


def _check_port(text: str) -> str:
    PortRef.parse(text)
    return text


PortStr = Annotated[str, AfterValidator(_check_port)]


def _name_check(forbidden: str, why: str):
    def check(text: str) -> str:
        if not text:
            raise ValueError("a name cannot be empty")
        bad = next((c for c in text if c.isspace() or not c.isprintable() or c in forbidden), None)
        if bad is not None:
            if bad in forbidden:
                raise ValueError(f"name {text!r} cannot contain {bad!r}: {why}")
            raise ValueError(f"name {text!r} cannot contain whitespace or control characters ({bad!r})")
        return text

    return AfterValidator(check)


# what a name may hold: printable, no whitespace; node and channel names appear in ports
# 'node:port', graph names in types 'A|B'
Name = Annotated[str, _name_check("", "")]
PortName = Annotated[str, _name_check(":", "it is written in ports as 'node:port'")]
GraphName = Annotated[str, _name_check("|", "graph types are written 'A|B'")]
Cap = Annotated[int, Field(ge=1)]
MAX_CLONED = 1024  # replicas of one node: each is a process
Cloned = Annotated[int, Field(ge=1, le=MAX_CLONED)]

_CLOSED = ConfigDict(frozen=True, strict=True, extra="forbid")
_OPEN = ConfigDict(frozen=True, strict=True, extra="allow")


def check_failed(reason: str, loc: Loc, first_loc: Loc | None = None) -> PydanticCustomError:
    """Build the ``config_check`` error described in the module docstring (to be raised)."""
    ctx: dict[str, Any] = {"reason": reason, "where": format_path(loc), "loc": tuple(loc)}
    if first_loc is not None:
        ctx["first_loc"] = tuple(first_loc)
    return PydanticCustomError("config_check", "{where}: {reason}", ctx)


def _check_unique(items: Sequence[Any], kind: str, field: str) -> None:
    """Raise ``config_check`` at ``field[i].name`` for the second item named like an earlier one."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.name in seen:
            raise check_failed(
                f"duplicate {kind} name {item.name!r}", (field, i, "name"), (field, seen[item.name], "name")
            )
        seen[item.name] = i


class _PortsMixin:
    """Adds ``refs`` to a model with a validated ``ports`` field."""

    @property
    def refs(self) -> list[PortRef]:
        """The ``ports`` parsed (each was validated when the model was built)."""
        return [PortRef.parse(p) for p in self.ports]  # type: ignore[attr-defined]


class Connection(_PortsMixin, BaseModel):
    """A channel between nodes: ``cap`` is its capacity, ``ports`` the ends (at least 2)."""

    model_config = _CLOSED
    cap: Cap
    ports: Annotated[list[PortStr], Field(min_length=2)]


class NamedConn(_PortsMixin, BaseModel):
    """A graph input or output: the channel ``name`` joined to the inner ``ports`` (at least 1)."""

    model_config = _CLOSED
    name: PortName
    cap: Cap
    ports: Annotated[list[PortStr], Field(min_length=1)]


class _WithArgs(BaseModel):
    """A model whose unknown keys are constructor arguments for a plugin object."""

    model_config = _OPEN

    @property
    def args(self) -> dict[str, Any]:
        """A new dict of every key other than the declared fields, values as parsed from TOML."""
        return dict(self.model_extra or {})


class Node(_WithArgs):
    """A node: ``ty`` names the node type (or a graph), ``cloned`` its parallelism, ``res`` the
    resource names it may ``get``; other keys are its ``args``."""

    name: PortName
    ty: str
    cloned: Cloned = 1
    res: list[str] = []


class Resource(_WithArgs):
    """A resource: ``ty`` names its type; other keys are its ``args``."""

    name: Name
    ty: str


class Graph(BaseModel):
    """A graph (the main one or a subgraph type).

    Validation raises when two nodes, two resources, two inputs or two outputs share a name (inputs
    and outputs are separate namespaces).
    """

    model_config = _CLOSED
    name: GraphName
    resources: list[Resource] = []
    nodes: list[Node] = []
    inputs: list[NamedConn] = []
    outputs: list[NamedConn] = []
    connections: list[Connection] = []

    @model_validator(mode="after")
    def _unique_names(self) -> Graph:
        _check_unique(self.nodes, "node", "nodes")
        _check_unique(self.resources, "resource", "resources")
        _check_unique(self.inputs, "input", "inputs")
        _check_unique(self.outputs, "output", "outputs")
        return self


class Auth(BaseModel):
    """``[auth]``: ``tokens`` is the tokens file (``megflow-mp token add``) that protects every front
    door of the app; the loader makes it relative to the file that names it."""

    model_config = _CLOSED
    tokens: str


class Config(BaseModel):
    """A whole config file, after includes are merged.

    Validation raises when two graphs, two top-level nodes or two top-level resources share a name,
    when a graph node reuses a top-level node's name, or when ``main`` names no graph.
    """

    model_config = _CLOSED
    include: list[str] = []
    plugins: list[str] = []  # plugin directories or .py files, resolved by the loader against the file that names them
    auth: Auth | None = None  # [auth]: tokens of every front door (megflow_mp.auth)
    resources: list[Resource] = []
    nodes: list[Node] = []
    graphs: list[Graph] = []
    main: str
    _origins: dict = PrivateAttr(default_factory=dict)  # set by the loader: key -> [(file, own index)]

    def locate(self, path: str, default_file: str) -> tuple[str, str]:
        """Map a TOML path of the merged config (``graphs[3].nodes[0]``) to ``(file, path in that
        file)``: entries that came from an included file are named by their own file and index."""
        key, sep, rest = path.partition("[")
        index, _, tail = rest.partition("]")
        table = self._origins.get(key)
        if not sep or not index.isdigit() or not table or int(index) >= len(table):
            return default_file, path
        file, own = table[int(index)]
        return file, f"{key}[{own}]{tail}"

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        _check_unique(self.graphs, "graph", "graphs")
        _check_unique(self.nodes, "node", "nodes")
        _check_unique(self.resources, "resource", "resources")
        shared = {node.name: i for i, node in enumerate(self.nodes)}
        for g, graph in enumerate(self.graphs):
            for n, node in enumerate(graph.nodes):
                if node.name in shared:
                    raise check_failed(
                        f"node name {node.name!r} is already used by a top-level node",
                        ("graphs", g, "nodes", n, "name"),
                        ("nodes", shared[node.name], "name"),
                    )
        if self.graph(self.main) is None:
            names = ", ".join(repr(g.name) for g in self.graphs) or "none"
            raise check_failed(f"main graph {self.main!r} is not defined (graphs: {names})", ("main",))
        return self

    def graph(self, name: str) -> Graph | None:
        """The graph called ``name``, or ``None``."""
        return next((g for g in self.graphs if g.name == name), None)
