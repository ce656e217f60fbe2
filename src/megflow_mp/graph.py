"""The resolved app: config + registry checked against each other, ready for planning.

This is the second config layer. :func:`build_app` turns a validated :class:`~megflow_mp.config.Config`
and a :class:`~megflow_mp.registry.Registry` into an immutable :class:`App`: every node type known,
every port checked (direction, list/dict tags), subgraph references and dynamic (per-address)
subgraphs identified, shared top-level nodes found, and one worker process assigned to each replica
of each node declaration. Nothing here runs plugin code. Errors are :class:`ConfigError` with the
TOML path of the offending field.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from .config.portref import PortRef
from .errors import ConfigError
from .registry import DICT, LIST, NodeType, Registry
from .restarts import RestartPolicy

if TYPE_CHECKING:
    from .config import Config

SHARED = "@"  # graph name of top-level (shared) node declarations


@dataclass(frozen=True)
class Endpoint:
    """One resolved end of a connection inside a graph template; ``tag`` is normalised to a string
    (list ports get their position even when the config gave none)."""

    node: str
    port: str
    tag: str | None = None


@dataclass(frozen=True)
class LeafDecl:
    """A node declaration whose type is a registered node type; it owns ``cloned`` processes."""

    key: str
    graph: str
    name: str
    ntype: NodeType
    args: MappingProxyType
    cloned: int
    res: tuple[str, ...]
    restart: int | None = None  # ``restart = N`` as the config says it (None: not given); what it
    # means in this app, the default included: :meth:`App.policy` (:mod:`megflow_mp.restarts`)
    placement: MappingProxyType = MappingProxyType({})  # what each replica needs on a Ray cluster (--ray)

    @property
    def shared(self) -> bool:
        return self.graph == SHARED


@dataclass(frozen=True)
class SubDecl:
    """A node declaration whose ``ty`` names one graph, or several as ``"A|B"`` (picked by tag)."""

    name: str
    types: tuple[str, ...]
    args: MappingProxyType
    res: tuple[str, ...]


@dataclass(frozen=True)
class Conn:
    cap: int
    senders: tuple[Endpoint, ...]
    receivers: tuple[Endpoint, ...]


@dataclass(frozen=True)
class DynBinding:
    """A dynamic port of a creator node wired to a subgraph node: one instance per address."""

    sub: str
    port: str  # the subgraph's input (creator output) or output (creator input) name
    cap: int


@dataclass(frozen=True)
class Template:
    """A ``[[graphs]]`` entry, resolved. ``dynamic`` maps ``(creator node, port)`` to its binding."""

    name: str
    leaves: MappingProxyType
    subs: MappingProxyType
    conns: tuple[Conn, ...]
    inputs: MappingProxyType  # name -> (cap, tuple[Endpoint])
    outputs: MappingProxyType
    resources: MappingProxyType  # name -> (ty, args)
    dynamic: MappingProxyType


@dataclass(frozen=True)
class App:
    """Everything the runtime needs, immutable. ``procs[i]`` is ``(decl key, replica)``."""

    config: Config
    registry: Registry
    file: str
    main: str
    templates: MappingProxyType
    shared: MappingProxyType  # name -> LeafDecl
    global_resources: MappingProxyType
    procs: tuple[tuple[str, int], ...]
    decl_procs: MappingProxyType  # decl key -> tuple of process indices
    decls: MappingProxyType  # decl key -> LeafDecl
    shared_chans: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    shared_caps: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    auth: str | None = None  # the tokens file of every front door ([auth] tokens, run --auth-tokens): megflow_mp.auth

    @property
    def nworkers(self) -> int:
        return len(self.procs)

    @property
    def front_door(self) -> bool:
        """A node type of the app answers clients (``interactive = True``: ImageServer, BytesServer,
        VideoServer, or a plugin class that says so): its nodes get the default restart policy."""
        return any(getattr(d.ntype.factory, "interactive", False) for d in self.decls.values())

    def policy(self, decl: str) -> RestartPolicy:
        """The restart policy of node declaration ``decl`` (its key) in this app: what its
        ``restart`` says, else the default of an app with or without a front door (none for a node
        type that creates subgraph instances; :mod:`megflow_mp.restarts` says why)."""
        d = self.decls[decl]
        return RestartPolicy.of(d.restart, self.front_door, bool(d.ntype.dynamic_outputs or d.ntype.dynamic_inputs))

    def proc_policy(self, proc: int) -> RestartPolicy:
        """The restart policy of the node of worker process ``proc``."""
        return self.policy(self.procs[proc][0])


class _Builder:
    def __init__(self, config: Config, registry: Registry, file: str):
        self.config, self.registry, self.file = config, registry, file
        self.graph_names = {g.name: gi for gi, g in enumerate(config.graphs)}

    def fail(self, message: str, path: str):
        file, path = self.config.locate(path, self.file)
        raise ConfigError(message, file=file, path=path)

    # -- node declarations ----------------------------------------------------------------------
    def node_type(self, ty: str, path: str) -> NodeType | tuple[str, ...]:
        if ty in self.registry.nodes:
            return self.registry.nodes[ty]
        names = tuple(ty.split("|"))
        if all(n in self.graph_names for n in names):
            return names
        known = ", ".join(self.registry.known_nodes())
        graphs = ", ".join(self.graph_names) or "none"
        self.fail(f"unknown node type {ty!r}; known node types: {known}; graphs: {graphs}", path)

    def decl(self, graph: str, node, path: str):
        t = self.node_type(node.ty, f"{path}.ty")
        args = dict(node.args)
        restart = args.pop("restart", None)
        if restart is not None and (isinstance(restart, bool) or not isinstance(restart, int) or restart < 0):
            self.fail(f"restart must be an integer >= 0 (times within 60 s a worker that ended is started again; "
                      f"0: never), got {restart!r}",
                      f"{path}.restart")
        placement = self.placement(args.pop("placement", None), f"{path}.placement")
        args = MappingProxyType({"name": node.name, **args})
        if isinstance(t, tuple):
            if placement:
                self.fail("placement applies to nodes of a registered type, not to a subgraph node: place the "
                          "subgraph's own nodes", f"{path}.placement")
            return SubDecl(node.name, t, args, tuple(node.res))
        unusable = None if t.builtin else _unusable_class(t.factory)
        if unusable:
            where = f" ({t.file})" if t.file else ""
            self.fail(f"node type {t.name!r}{where} cannot be used: {unusable}", f"{path}.ty")
        if t.args is not None:  # a declared model (pydantic): imported here, so a worker's import stays light
            from .config.schema import format_path
            from .nodeargs import args_problem

            problem = args_problem(t.args, {k: v for k, v in args.items() if k != "name"}, f"{t.name} {node.name!r}")
            if problem:
                self.fail(problem[1], f"{path}.{format_path(problem[0])}")
        return LeafDecl(f"{graph}/{node.name}", graph, node.name, t, args, node.cloned, tuple(node.res), restart,
                        placement)

    def placement(self, value, path: str) -> MappingProxyType:
        """A node's ``placement`` in Ray's vocabulary: ``num_cpus``, ``num_gpus`` (numbers >= 0) and
        ``resources`` (a table of custom resource names to numbers > 0); per replica."""
        if value is None:
            return MappingProxyType({})
        if not isinstance(value, dict):
            self.fail(f"placement must be a table like {{ num_cpus = 1, resources = {{ site_b = 1 }} }}, "
                      f"got {value!r}", path)
        out = {}
        for key, v in value.items():
            if key in ("num_cpus", "num_gpus"):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                    self.fail(f"{key} must be a number >= 0, got {v!r}", f"{path}.{key}")
                out[key] = v
            elif key == "resources":
                if not isinstance(v, dict):
                    self.fail(f"resources must be a table of resource names to amounts, got {v!r}", f"{path}.{key}")
                for name, amount in v.items():
                    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount <= 0:
                        self.fail(f"resource {name!r} needs an amount > 0, got {amount!r}", f"{path}.{key}.{name}")
                    if name in ("CPU", "GPU", "memory", "object_store_memory"):
                        self.fail(f"resource {name!r} is Ray's own: use num_cpus / num_gpus", f"{path}.{key}.{name}")
                out[key] = MappingProxyType(dict(v))
            else:
                self.fail(f"unknown placement key {key!r}; known: num_cpus, num_gpus, resources", f"{path}.{key}")
        return MappingProxyType(out)

    # -- ports --------------------------------------------------------------------------------
    def direction(self, decl, port: str, graph_name: str, path: str) -> str:
        """'out' when ``port`` sends, 'in' when it receives."""
        if isinstance(decl, LeafDecl):
            t = decl.ntype
            if t.output(port):
                return "out"
            if t.input(port):
                return "in"
            self.fail(f"node {decl.name!r} (type {t.name}) has no port {port!r}; {t.port_names()}", path)
        ins = set().union(*(self.graphs_io(g, "inputs") for g in decl.types))
        outs = set().union(*(self.graphs_io(g, "outputs") for g in decl.types))
        if port in outs:
            return "out"
        if port in ins:
            return "in"
        self.fail(f"subgraph node {decl.name!r} ({'|'.join(decl.types)}) has no port {port!r}; "
                  f"inputs: {', '.join(sorted(ins)) or 'none'}; outputs: {', '.join(sorted(outs)) or 'none'}", path)

    def graphs_io(self, name: str, which: str) -> set[str]:
        return {c.name for c in getattr(self.config.graphs[self.graph_names[name]], which)}

    def endpoint(self, ref: PortRef, decl, counters: dict, path: str) -> Endpoint:
        tag = ref.tag
        if isinstance(decl, LeafDecl):
            spec = decl.ntype.input(ref.port) or decl.ntype.output(ref.port)
            if spec.kind == LIST:
                if tag is None:
                    key = (decl.name, ref.port)
                    tag = str(counters.get(key, 0))
                    counters[key] = int(tag) + 1
                elif not tag.isdigit():
                    self.fail(f"port {ref.port!r} of node {decl.name!r} is a list: its tag must be an index, got {tag!r}", path)
            elif spec.kind == DICT and tag is None:
                self.fail(f"port {ref.port!r} of node {decl.name!r} is a dict port: give a tag, as '{ref.node}:{ref.port}:KEY'", path)
            elif spec.kind not in (LIST, DICT) and tag is not None:
                tag = None  # a tag on a single port selects a subgraph type, it is not an element
        return Endpoint(ref.node, ref.port, tag)

    # -- graphs -------------------------------------------------------------------------------
    def template(self, gi: int, shared: dict) -> Template:
        g = self.config.graphs[gi]
        base = f"graphs[{gi}]"
        leaves, subs = {}, {}
        for ni, node in enumerate(g.nodes):
            d = self.decl(g.name, node, f"{base}.nodes[{ni}]")
            (subs if isinstance(d, SubDecl) else leaves)[node.name] = d
        if g.name in self.graph_names and any(g.name in s.types for s in subs.values()):
            self.fail(f"graph {g.name!r} contains itself", base)
        local = {**shared, **leaves, **subs}
        conns, dynamic, counters = [], {}, {}
        for ci, c in enumerate(g.connections):
            senders, receivers = [], []
            for pi, text in enumerate(c.ports):
                path = f"{base}.connections[{ci}].ports[{pi}]"
                ref = PortRef.parse(text)
                decl = local.get(ref.node)
                if decl is None:
                    self.fail(f"no node {ref.node!r} in graph {g.name!r} or among the shared [[nodes]]; "
                              f"nodes here: {', '.join(sorted(local)) or 'none'}", path)
                d = self.direction(decl, ref.port, g.name, path)
                (senders if d == "out" else receivers).append((self.endpoint(ref, decl, counters, path), decl))
            path = f"{base}.connections[{ci}]"
            if not senders:
                self.fail("connection has no sending port (every port listed is an input)", path)
            if not receivers:
                self.fail("connection has no receiving port (every port listed is an output)", path)
            dyn = [(e, d) for e, d in senders + receivers
                   if isinstance(d, LeafDecl) and e.port in (d.ntype.dynamic_outputs | d.ntype.dynamic_inputs)]
            if dyn:
                (creator, cdecl), = dyn[:1]
                others = [(e, d) for e, d in senders + receivers if (e, d) != (creator, cdecl)]
                if len(others) != 1 or not isinstance(others[0][1], SubDecl):
                    self.fail(f"dynamic port {creator.node}:{creator.port} must be connected to exactly one "
                              f"subgraph node", path)
                dynamic[(creator.node, creator.port)] = DynBinding(others[0][0].node, others[0][0].port, c.cap)
                continue
            conns.append(Conn(c.cap, tuple(e for e, _ in senders), tuple(e for e, _ in receivers)))
        io = {}
        for which in ("inputs", "outputs"):
            table = {}
            for ii, nc in enumerate(getattr(g, which)):
                eps = []
                for pi, text in enumerate(nc.ports):
                    path = f"{base}.{which}[{ii}].ports[{pi}]"
                    ref = PortRef.parse(text)
                    decl = local.get(ref.node)
                    if decl is None:
                        self.fail(f"no node {ref.node!r} in graph {g.name!r}", path)
                    want = "in" if which == "inputs" else "out"
                    if self.direction(decl, ref.port, g.name, path) != want:
                        self.fail(f"graph {which[:-1]} {nc.name!r} must name {'an input' if want == 'in' else 'an output'} "
                                  f"port, {ref.node}:{ref.port} is not one", path)
                    eps.append(self.endpoint(ref, decl, counters, path))
                table[nc.name] = (nc.cap, tuple(eps))
            io[which] = MappingProxyType(table)
        resources = MappingProxyType({r.name: (r.ty, MappingProxyType(dict(r.args))) for r in g.resources})
        return Template(g.name, MappingProxyType(leaves), MappingProxyType(subs), tuple(conns), io["inputs"],
                        io["outputs"], resources, MappingProxyType(dynamic))

    def check_resources(self, templates: dict, global_res: dict) -> None:
        for gi, g in enumerate(self.config.graphs):
            for ni, node in enumerate(g.nodes):
                for ri, name in enumerate(node.res):
                    if name in global_res or name in templates[g.name].resources:
                        continue
                    # a name passed down by a subgraph node that uses this graph is fine too
                    if any(name in s.res for t in templates.values() for s in t.subs.values() if g.name in s.types):
                        continue
                    self.fail(f"node {node.name!r} uses resource {name!r}, which is not declared in graph "
                              f"{g.name!r}, passed by a subgraph node, or global", f"graphs[{gi}].nodes[{ni}].res[{ri}]")
        for name, (ty, _) in {**global_res, **{k: v for t in templates.values() for k, v in t.resources.items()}}.items():
            if ty not in self.registry.resources:
                known = ", ".join(sorted(self.registry.resources)) or "none"
                self.fail(f"resource {name!r} has unknown type {ty!r}; known resource types: {known}", "resources")


def _check_nesting(b: _Builder, config: Config, templates: dict) -> None:
    """Fail when a graph contains itself through other graphs (``g -> h -> g``): its expansion never
    ends. The error names the node of the first graph of the cycle that starts it."""
    index = {g.name: gi for gi, g in enumerate(config.graphs)}
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        if name in path:
            cycle = path[path.index(name):] + [name]
            gi = index[cycle[0]]
            ni = next(i for i, n in enumerate(config.graphs[gi].nodes)
                      if n.name in templates[cycle[0]].subs and cycle[1] in templates[cycle[0]].subs[n.name].types)
            b.fail(f"graph {cycle[0]!r} contains itself: {' -> '.join(cycle)}", f"graphs[{gi}].nodes[{ni}].ty")
        if name in done or name not in templates:
            return
        path.append(name)
        for sub in templates[name].subs.values():
            for ty in sub.types:
                visit(ty)
        path.pop()
        done.add(name)

    for name in templates:
        visit(name)


def _reachable(templates: dict, main: str) -> list[str]:
    seen, stack = [], [main]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.append(name)
        for s in templates[name].subs.values():
            stack.extend(s.types)
    return seen


def _unusable_class(factory) -> str | None:
    """Why ``factory`` cannot be a node (no ``exec``, no ``(name, args)`` constructor), or None."""
    if not callable(getattr(factory, "exec", None)):
        return "it has no exec() method"
    try:
        inspect.signature(factory).bind("name", {})
    except TypeError as exc:
        return f"it cannot be built as {getattr(factory, '__name__', 'cls')}(name, args): {exc}"
    except ValueError:  # no signature to read (a builtin type): nothing to check
        pass
    return None


MODEL_SUFFIXES = (".onnx", ".mge")


def check_model_files(app: App) -> None:
    """Raise ``ConfigError`` at the argument for a model file (``.onnx``/``.mge``) named by a node or
    resource of ``app`` that does not exist (relative paths are from the working directory, as the
    model loaders read them)."""
    config = app.config
    tables = [(f"nodes[{i}]", n.args) for i, n in enumerate(config.nodes)]
    tables += [(f"resources[{i}]", r.args) for i, r in enumerate(config.resources)]
    tables += [(f"graphs[{g}].nodes[{i}]", n.args) for g, graph in enumerate(config.graphs)
               for i, n in enumerate(graph.nodes)]
    tables += [(f"graphs[{g}].resources[{i}]", r.args) for g, graph in enumerate(config.graphs)
               for i, r in enumerate(graph.resources)]
    for where, args in tables:
        for key, value in args.items():
            if isinstance(value, str) and value.endswith(MODEL_SUFFIXES) and not os.path.isfile(value):
                file, path = config.locate(f"{where}.{key}", app.file)
                hint = "" if os.path.isabs(value) else f" (relative to the working directory {os.getcwd()})"
                raise ConfigError(f"model file not found: {value}{hint}", file=file, path=path)


def build_app(config: Config, registry: Registry, file: str = "<config>") -> App:
    """Check ``config`` against ``registry`` and assign processes. Raises :class:`ConfigError`."""
    b = _Builder(config, registry, file)
    shared = {}
    for ni, node in enumerate(config.nodes):
        d = b.decl(SHARED, node, f"nodes[{ni}]")
        if isinstance(d, SubDecl):
            b.fail("a shared [[nodes]] entry must be a node type, not a graph", f"nodes[{ni}].ty")
        shared[node.name] = d
    templates = {g.name: b.template(gi, shared) for gi, g in enumerate(config.graphs)}
    _check_nesting(b, config, templates)
    global_res = {r.name: (r.ty, MappingProxyType(dict(r.args))) for r in config.resources}
    b.check_resources(templates, global_res)
    used = _reachable(templates, config.main)
    decls = {}
    for name in used:
        for d in templates[name].leaves.values():
            decls[d.key] = d
    used_shared = {e.node for name in used for c in templates[name].conns for e in c.senders + c.receivers
                   if e.node in shared and e.node not in templates[name].leaves and e.node not in templates[name].subs}
    used_shared |= {e.node for name in used for table in (templates[name].inputs, templates[name].outputs)
                    for _, eps in table.values() for e in eps if e.node in shared}
    for name in sorted(used_shared, key=list(shared).index):
        decls[shared[name].key] = shared[name]
    procs, decl_procs = [], {}
    for key, d in decls.items():
        decl_procs[key] = tuple(range(len(procs), len(procs) + d.cloned))
        procs.extend((key, r) for r in range(d.cloned))
    chans, caps = {}, {}
    for name in used:
        tpl = templates[name]
        feeds = [(c.cap, e) for c in tpl.conns for e in c.receivers]
        feeds += [(cap, e) for cap, eps in tpl.inputs.values() for e in eps]
        for cap, e in feeds:
            if e.node in used_shared and e.node not in tpl.leaves:
                key = (e.node, e.port, e.tag)
                chans.setdefault(key, len(chans) + 1)
                caps[key] = max(caps.get(key, 1), cap)
    for name in used_shared:
        for p in shared[name].ntype.inputs:
            if p.kind not in (LIST, DICT):
                chans.setdefault((name, p.name, None), len(chans) + 1)
                caps.setdefault((name, p.name, None), 16)
    auth = None
    if config.auth is not None:
        auth = config.auth.tokens
        if not os.path.isfile(auth):
            b.fail(f"tokens file not found: {auth} (create it: megflow-mp token add NAME --role operator "
                   f"--file {auth})", "auth.tokens")
    return App(config, registry, file, config.main, MappingProxyType(templates),
               MappingProxyType({n: shared[n] for n in used_shared}), MappingProxyType(global_res),
               tuple(procs), MappingProxyType(decl_procs), MappingProxyType(decls), MappingProxyType(chans),
               MappingProxyType(caps), auth)
