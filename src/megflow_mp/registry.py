"""Node and resource types: the ``register`` / ``res_register`` decorators and the Registry object.

Decorators record each type in its defining module (the module object's ``__megflow_types__``
list, see :func:`module_types`), so the record lives and dies with the module: importing a plugin
module again (a reload, another app's module of the same name) starts a fresh list, and nothing is
kept process-wide. A :class:`Registry` is an ordinary object built from chosen modules (the plugin
loader builds a fresh one per app, tests build their own).
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .errors import PluginError

SINGLE, LIST, DICT = "single", "list", "dict"


@dataclass(frozen=True)
class PortSpec:
    """A declared port: ``"p"`` (single), ``"p:[]"`` (list, tag = index), ``"p:{}"`` (dict, tag = key)."""

    name: str
    kind: str = SINGLE

    @staticmethod
    def parse(text: str) -> "PortSpec":
        name, sep, rest = text.partition(":")
        kinds = {"": SINGLE, "[]": LIST, "{}": DICT}
        if not name.isidentifier() or (sep and rest not in ("[]", "{}")):
            raise ValueError(f"bad port declaration {text!r}: expected 'name', 'name:[]' or 'name:{{}}'")
        return PortSpec(name, kinds[rest])


@dataclass(frozen=True)
class NodeType:
    """A node type: how to build it (``factory(name, args)``) and which ports it declares.

    ``dynamic_outputs`` names output ports that create one subgraph instance per address
    (DynDemux's ``out``); ``kernel`` is set for built-ins that need the engine's runtime handle.
    ``args`` is the pydantic model of its declared arguments (:mod:`megflow_mp.nodeargs`), or None:
    free-form arguments, nothing checked (MegFlow's plugins).
    """

    name: str
    factory: Callable
    inputs: tuple[PortSpec, ...] = ()
    outputs: tuple[PortSpec, ...] = ()
    exclusive: bool = False
    module: str = ""
    file: str = ""
    builtin: bool = False
    dynamic_outputs: frozenset = frozenset()
    dynamic_inputs: frozenset = frozenset()
    args: type | None = None

    def input(self, name: str) -> PortSpec | None:
        return next((p for p in self.inputs if p.name == name), None)

    def output(self, name: str) -> PortSpec | None:
        return next((p for p in self.outputs if p.name == name), None)

    def port_names(self) -> str:
        ins = ", ".join(p.name for p in self.inputs) or "none"
        outs = ", ".join(p.name for p in self.outputs) or "none"
        return f"inputs: {ins}; outputs: {outs}"


@dataclass(frozen=True)
class ResourceType:
    """A resource type, built lazily as ``factory(name, args)`` the first time a node uses it."""

    name: str
    factory: Callable
    module: str = ""
    file: str = ""


TYPES_ATTR = "__megflow_types__"  # on a module: the types it registered, in definition order


def module_types(module: str) -> tuple:
    """The node and resource types that the (imported) module named ``module`` registered."""
    return tuple(getattr(sys.modules.get(module), TYPES_ATTR, ()))


def registered_types() -> list:
    """Every type registered by a module imported in this process (for lookups by name)."""
    return [t for mod in list(sys.modules.values()) for t in getattr(mod, TYPES_ATTR, ())]


def _source_file(obj) -> str:
    try:
        return inspect.getsourcefile(obj) or ""
    except TypeError:
        return ""


def _ports(specs: Iterable[str], owner: str) -> tuple[PortSpec, ...]:
    if isinstance(specs, str):
        specs = [specs]
    try:
        ports = tuple(PortSpec.parse(s) for s in specs)
    except ValueError as exc:
        raise PluginError(f"@register of {owner!r}: {exc}", file=None) from None
    return ports


def _record(entry) -> None:
    module = sys.modules.get(entry.module)
    if module is None:
        raise PluginError(f"@register of {entry.name!r}: its module {entry.module!r} is not imported; define "
                          f"node types in a module that is imported (a plugin file)", file=entry.file)
    entries = module.__dict__.setdefault(TYPES_ATTR, [])
    entries[:] = [e for e in entries if not (type(e) is type(entry) and e.name == entry.name)]
    entries.append(entry)


def register(name: str | None = None, inputs=(), outputs=(), exclusive: bool = False, args=None):
    """Class decorator: make ``cls`` a node type named ``name`` (default: the class name).

    The class is built as ``cls(name, args)``; its zero-argument ``exec()`` is called until all
    inputs are closed (exactly once for a node without inputs). Each declared port is set on the
    instance as an attribute of the same name before ``exec`` runs. ``args``: a pydantic model of
    the node's arguments (:class:`megflow_mp.nodeargs.NodeArgs`): a config giving an argument it
    does not declare, or a wrong value, is refused by ``check`` and ``run``; without it the
    arguments are free-form.
    """

    def decorator(cls):
        type_name = name or cls.__name__
        ins, outs = _ports(inputs, type_name), _ports(outputs, type_name)
        dup = {p.name for p in ins} & {p.name for p in outs}
        if dup:
            raise PluginError(f"@register of {type_name!r}: port {sorted(dup)[0]!r} is both input and output",
                              file=_source_file(cls))
        if args is not None and not _is_model(args):
            raise PluginError(f"@register of {type_name!r}: args must be a pydantic model class (a subclass of "
                              f"megflow_mp.nodeargs.NodeArgs), got {args!r}", file=_source_file(cls))
        _record(NodeType(type_name, cls, ins, outs, bool(exclusive), cls.__module__, _source_file(cls), args=args))
        return cls

    return decorator


def _is_model(obj) -> bool:
    from pydantic import BaseModel

    return isinstance(obj, type) and issubclass(obj, BaseModel)


def res_register(name: str | None = None):
    """Class decorator: make ``cls`` a resource type, built as ``cls(name, args)`` on first use."""

    def decorator(cls):
        _record(ResourceType(name or cls.__name__, cls, cls.__module__, _source_file(cls)))
        return cls

    return decorator


@dataclass
class Registry:
    """The node and resource types one app can use."""

    nodes: dict[str, NodeType] = field(default_factory=dict)
    resources: dict[str, ResourceType] = field(default_factory=dict)

    def add_node(self, t: NodeType) -> None:
        old = self.nodes.get(t.name)
        if old is not None and old.factory is not t.factory and not old.builtin:
            raise PluginError(f"node type {t.name!r} is registered twice ({old.file} and {t.file})", file=t.file)
        self.nodes[t.name] = t

    def add_resource(self, t: ResourceType) -> None:
        self.resources[t.name] = t

    def add_modules(self, modules: Iterable[str]) -> "Registry":
        """Add every type defined in ``modules`` (module names, as imported)."""
        for mod in modules:
            for entry in module_types(mod):
                (self.add_node if isinstance(entry, NodeType) else self.add_resource)(entry)
        return self

    def known_nodes(self) -> list[str]:
        return sorted(self.nodes)


def builtin_registry() -> Registry:
    """A registry holding only the built-in node types."""
    from .nodes import BUILTIN_MODULES  # late: the built-ins use the decorators above

    reg = Registry()
    reg.add_modules(BUILTIN_MODULES)
    for t in list(reg.nodes.values()):
        reg.nodes[t.name] = _as_builtin(t)
    return reg


def _as_builtin(t: NodeType) -> NodeType:
    from dataclasses import replace

    return replace(t, builtin=True, dynamic_outputs=frozenset(getattr(t.factory, "dynamic_outputs", ())),
                   dynamic_inputs=frozenset(getattr(t.factory, "dynamic_inputs", ())))
