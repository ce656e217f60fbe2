"""Instance planning: turn one graph template into concrete node instances and channels.

:func:`plan_instance` is used twice: by the supervisor for the main graph before any fork (static
instances) and by a creator node (DynDemux, a video server) at run time for each new address
(dynamic instances). It is a pure function of the :class:`~megflow_mp.graph.App`, which every
process holds (inherited at fork), so any process can plan an instance and send each host its part.

Also here: :func:`plan_shared` (the one instance of each top-level shared node) and
:func:`static_items` (what each worker installs before the app starts). Specs hold plain dicts and
tuples only, so plans pickle with the standard pickler (they travel in control messages).

Vocabulary: a *channel* is one receiving port element of one node instance (identified by an int
unique in the app); a :class:`Dest` is where a sender delivers: the channel, the processes hosting
its replicas (they compete for its messages) and whether the receiver is a shared node (then the
sender stamps the envelope with its instance id, the *route*).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import NamedTuple, Union

from .graph import App, Endpoint, LeafDecl, Template
from .registry import DICT, LIST

STATIC_ID_BASE = 1 << 20
DYNAMIC_ID_STRIDE = 1 << 40
MAIN = STATIC_ID_BASE - 1  # the instance id of the main graph (shared nodes are instance 0)


@dataclass(frozen=True)
class Dest:
    chan: int
    procs: tuple[int, ...]
    shared: bool
    cap: int
    route: int | None = None  # for a shared receiver: the graph instance whose wiring it serves
    key: str | None = None  # envelope attribute that picks the replica (a node type's ``keyed_by``)


@dataclass(frozen=True)
class InSpec:
    chan: int
    cap: int
    senders: int  # how many sender endpoints must close before the channel is closed
    procs: tuple = ()  # the process of each sender endpoint (a dead one's ends are taken as closed)


@dataclass(frozen=True)
class ResBinding:
    """A resource as a node sees it: ``scope`` 0 is the app, otherwise the owning graph instance."""

    scope: int
    name: str
    ty: str
    args: dict


@dataclass
class NodeSpec:
    """One node instance; hosted by every process of ``decl`` (one object per process)."""

    inst: int
    top: int  # the instance whose creator counts this node's end
    path: str
    decl: str
    args: dict
    res: dict  # name -> ResBinding
    inputs: dict = field(default_factory=dict)  # port -> InSpec | {tag: InSpec}
    outputs: dict = field(default_factory=dict)  # port -> [Dest] | {tag: [Dest]}
    dynamic: dict = field(default_factory=dict)  # port -> DynSpec


@dataclass
class RouteSpec:
    """What one graph instance registers on a shared node: expected closers per input channel and
    where outputs go for envelopes stamped with this route."""

    shared: str
    route: int
    inputs: dict = field(default_factory=dict)  # chan -> senders
    outputs: dict = field(default_factory=dict)  # (port, tag) -> [Dest]


@dataclass(frozen=True)
class DynSpec:
    """Everything a creator needs to plan instances for one dynamic port."""

    types: tuple[str, ...]
    port: str
    cap: int
    path: str
    visible: dict  # resource bindings passed down by the subgraph node
    args: dict


@dataclass
class InstancePlan:
    inst: int
    graph: str
    path: str
    creator: int
    nodes: list = field(default_factory=list)
    routes: dict = field(default_factory=dict)  # (shared, route) -> RouteSpec
    entry: dict = field(default_factory=dict)  # graph input name -> [Dest] (for the creator)
    exits: dict = field(default_factory=dict)  # graph output name -> number of sender endpoints
    exit_procs: dict = field(default_factory=dict)  # graph output name -> the process of each of them
    near: frozenset = frozenset()  # processes on the creator's machine (a cluster run), else empty

    def procs_of(self, app: App, decl: str) -> tuple:
        """The replicas of non-shared node declaration ``decl`` that host this instance's nodes: on
        a cluster, those on the creator's machine when it has any (the instance stays on one
        machine: frames cross the network only to shared nodes elsewhere), else all of them."""
        procs = app.decl_procs[decl]
        if self.near:
            local = tuple(p for p in procs if p in self.near)
            if local:
                return local
        return procs

    def hosts(self, app: App) -> dict[int, list]:
        """Process index -> the NodeSpecs and RouteSpecs it must install."""
        out: dict[int, list] = {}
        for spec in self.nodes:
            for p in self.procs_of(app, spec.decl):
                out.setdefault(p, []).append(spec)
        for r in self.routes.values():
            for p in app.decl_procs[app.shared[r.shared].key]:
                out.setdefault(p, []).append(r)
        return out

    def node_count(self, app: App) -> int:
        return sum(len(self.procs_of(app, s.decl)) for s in self.nodes)


class IdAllocator:
    """Unique channel and instance ids: static ones below ``DYNAMIC_ID_STRIDE``, dynamic ones in a
    range owned by the allocating process, so processes never need to agree on ids."""

    def __init__(self, proc: int | None, start: int = STATIC_ID_BASE):
        base = start if proc is None else (proc + 1) * DYNAMIC_ID_STRIDE
        self._next = itertools.count(base)

    def __call__(self) -> int:
        return next(self._next)


class LeafEnd(NamedTuple):
    """A resolved endpoint on a node of graph instance ``inst``."""

    inst: int
    node: str
    port: str
    tag: str | None
    decl: LeafDecl

    @property
    def key(self) -> tuple:
        return (self.inst, self.node, self.port, self.tag)


class SharedEnd(NamedTuple):
    """A resolved endpoint on shared node ``node``, used by the wiring of graph instance ``route``."""

    node: str
    port: str
    tag: str | None
    route: int
    decl: LeafDecl


End = Union[LeafEnd, SharedEnd]


class _Planner:
    def __init__(self, app: App, ids: IdAllocator, plan: InstancePlan):
        self.app, self.ids, self.plan = app, ids, plan
        self.chans: dict[tuple, InSpec] = {}
        self.specs: dict[tuple, NodeSpec] = {}

    def expand(self, tpl: Template, inst: int, path: str, visible: dict, overlay: dict) -> dict:
        """Create the node specs of ``tpl`` (and its static subgraphs); return a resolver context."""
        res = dict(visible)
        for name, (ty, args) in tpl.resources.items():
            res[name] = ResBinding(inst, name, ty, dict(args))
        ctx = {"tpl": tpl, "inst": inst, "subs": {}}
        for name, d in tpl.leaves.items():
            args = {**overlay, **d.args}
            bound = {r: self.binding(r, res) for r in d.res}
            spec = NodeSpec(inst, self.plan.inst, f"{path}/{name}", d.key, args, bound)
            self.specs[(inst, name)] = spec
            self.plan.nodes.append(spec)
        dyn_subs = {b.sub for b in tpl.dynamic.values()}
        for name, s in tpl.subs.items():
            if name in dyn_subs:
                continue
            if len(s.types) != 1:
                raise ValueError(f"subgraph node {name!r} of type {'|'.join(s.types)} is not wired to a dynamic "
                                 f"port, so it cannot pick a type by tag")
            child = self.ids()
            passed = {r: self.binding(r, res) for r in s.res}
            ctx["subs"][name] = self.expand(self.app.templates[s.types[0]], child, f"{path}/{name}", passed,
                                            {**overlay, **s.args})
        for (node, port), b in tpl.dynamic.items():
            s = tpl.subs[b.sub]
            passed = {r: self.binding(r, res) for r in s.res}
            self.specs[(inst, node)].dynamic[port] = DynSpec(s.types, b.port, b.cap, f"{path}/{b.sub}", passed,
                                                             {**overlay, **s.args})
        for c in tpl.conns:
            senders = [x for e in c.senders for x in self.resolve(ctx, e, "outputs")]
            receivers = [x for e in c.receivers for x in self.resolve(ctx, e, "inputs")]
            self.connect(senders, receivers, c.cap)
        return ctx

    def binding(self, name: str, res: dict) -> ResBinding:
        if name in res:
            return res[name]
        return global_binding(self.app, name)

    def resolve(self, ctx: dict, e: Endpoint, io: str) -> list[End]:
        tpl = ctx["tpl"]
        if e.node in tpl.leaves:
            return [LeafEnd(ctx["inst"], e.node, e.port, e.tag, tpl.leaves[e.node])]
        if e.node in tpl.subs:
            sub = ctx["subs"][e.node]
            _, eps = getattr(sub["tpl"], io)[e.port]
            return [x for inner in eps for x in self.resolve(sub, inner, io)]
        return [SharedEnd(e.node, e.port, e.tag, ctx["inst"], self.app.shared[e.node])]

    def channel(self, ep: End, cap: int) -> tuple[int, Dest]:
        if isinstance(ep, SharedEnd):
            procs = self.app.decl_procs[ep.decl.key]
            key = (ep.node, ep.port, ep.tag)
            chan = self.app.shared_chans[key]
            return chan, Dest(chan, procs, True, self.app.shared_caps[key], ep.route)
        procs = self.plan.procs_of(self.app, ep.decl.key)
        key = getattr(ep.decl.ntype.factory, "keyed_by", None) if len(procs) > 1 else None
        spec = self.chans.get(ep.key)
        if spec is None:
            spec = InSpec(self.ids(), cap, 0)
        spec = InSpec(spec.chan, max(spec.cap, cap), spec.senders, spec.procs)
        self.chans[ep.key] = spec
        _put(self.specs[(ep.inst, ep.node)].inputs, ep.port, ep.tag, spec)
        return spec.chan, Dest(spec.chan, procs, False, spec.cap, key=key)

    def add_senders(self, ep: End, chan: int, procs: tuple) -> None:
        """Sender endpoints in processes ``procs`` (one each) deliver to ``ep``'s channel ``chan``."""
        if isinstance(ep, SharedEnd):
            r = self.route(ep.node, ep.route)
            r.inputs[chan] = r.inputs.get(chan, 0) + len(procs)
            return
        old = self.chans[ep.key]
        self.chans[ep.key] = new = InSpec(old.chan, old.cap, old.senders + len(procs), old.procs + tuple(procs))
        _put(self.specs[(ep.inst, ep.node)].inputs, ep.port, ep.tag, new)

    def route(self, shared: str, route: int) -> RouteSpec:
        return self.plan.routes.setdefault((shared, route), RouteSpec(shared, route))

    def connect(self, senders: list, receivers: list, cap: int) -> None:
        dests = [(r, *self.channel(r, cap)) for r in receivers]
        for s in senders:
            procs = self.sender_procs(s)
            for r, chan, dest in dests:
                self.add_senders(r, chan, procs)
                self.add_output(s, dest)

    def sender_procs(self, ep: End) -> tuple:
        """The processes that send (and close) for endpoint ``ep``."""
        if isinstance(ep, SharedEnd):
            return self.app.decl_procs[ep.decl.key]
        return self.plan.procs_of(self.app, ep.decl.key)

    def add_output(self, s: End, dest: Dest) -> None:
        """Sender ``s`` delivers to ``dest``: a leaf's port gets it; a shared node gets it for the
        route of the instance whose wiring names it."""
        if isinstance(s, SharedEnd):
            self.route(s.node, s.route).outputs.setdefault((s.port, s.tag), []).append(dest)
        else:
            _append(self.specs[(s.inst, s.node)].outputs, s.port, s.tag, dest)


def global_binding(app: App, name: str) -> ResBinding:
    """The binding of the app's global resource ``name`` (scope 0)."""
    ty, args = app.global_resources[name]
    return ResBinding(0, name, ty, dict(args))


def _put(table: dict, port: str, tag, value) -> None:
    if tag is None:
        table[port] = value
    else:
        table.setdefault(port, {})[tag] = value


def _append(table: dict, port: str, tag, dest: Dest) -> None:
    if tag is None:
        table.setdefault(port, []).append(dest)
    else:
        table.setdefault(port, {}).setdefault(tag, []).append(dest)


def plan_instance(app: App, graph: str, inst: int, ids: IdAllocator, creator: int, path: str,
                  visible=None, overlay=None, entry_senders: int = 0,
                  exit_dests: dict | None = None, near: frozenset = frozenset()) -> InstancePlan:
    """Plan one instance of ``graph`` with id ``inst``.

    ``entry_senders`` is how many sender endpoints the creator has on each graph input (0 for the
    main graph, whose inputs are unused); ``exit_dests`` maps graph output names to the creator's
    receiving :class:`Dest` for them; ``near``, the processes on the creator's machine (a cluster
    run), keeps the instance's nodes there (see :meth:`InstancePlan.procs_of`). The returned plan
    lists every node instance and shared-node route to install, and ``entry`` gives the creator
    the destinations of each graph input.
    """
    plan = InstancePlan(inst, graph, path, creator, near=frozenset(near))
    planner = _Planner(app, ids, plan)
    ctx = planner.expand(app.templates[graph], inst, path, dict(visible or {}), dict(overlay or {}))
    tpl = app.templates[graph]
    for name, (cap, eps) in tpl.inputs.items():
        receivers = [x for e in eps for x in planner.resolve(ctx, e, "inputs")]
        plan.entry[name] = []
        for r in receivers:
            chan, dest = planner.channel(r, cap)
            if entry_senders:
                planner.add_senders(r, chan, (creator,) * entry_senders)
            plan.entry[name].append(dest)
    for name, dests in (exit_dests or {}).items():
        _, eps = tpl.outputs[name]
        senders = [x for e in eps for x in planner.resolve(ctx, e, "outputs")]
        plan.exit_procs[name] = tuple(p for s in senders for p in planner.sender_procs(s))
        plan.exits[name] = len(plan.exit_procs[name])
        for s in senders:
            for dest in dests:
                planner.add_output(s, dest)
    return plan


def shared_output_tags(app: App, name: str, port: str) -> list:
    """The tags of list/dict output ``port`` of shared node ``name`` that any graph wires."""
    tags = {e.tag for tpl in app.templates.values() for c in tpl.conns for e in c.senders
            if e.node == name and e.port == port and name not in tpl.leaves}
    return sorted(tags, key=lambda t: (len(t), t))


def plan_shared(app: App, name: str) -> NodeSpec:
    """The one instance (id 0, top 0) of shared node ``name``: its input channels, closed only by
    routes (no senders of their own), the tags of its list/dict outputs (each with no destination:
    those come with each route) and the global resources it names."""
    decl = app.shared[name]
    inputs: dict = {}
    for (node, port, tag), chan in app.shared_chans.items():
        if node == name:
            _put(inputs, port, tag, InSpec(chan, app.shared_caps[(node, port, tag)], 0))
    outputs = {p.name: {t: [] for t in shared_output_tags(app, name, p.name)}
               for p in decl.ntype.outputs if p.kind in (LIST, DICT)}
    res = {r: global_binding(app, r) for r in decl.res if r in app.global_resources}
    return NodeSpec(0, 0, name, decl.key, dict(decl.args), res, inputs, outputs)


def static_items(app: App, plan: InstancePlan | None = None) -> tuple[dict[int, list], int, int]:
    """Per worker: ``[(top, creator, items)]`` to install before start; plus the number of static
    non-shared and shared node replicas the supervisor waits for. ``plan`` is the main graph's plan
    (default: one whose inputs nobody feeds and whose outputs go nowhere). The creator of every
    static item is the supervisor (process index ``app.nworkers``)."""
    sup = app.nworkers
    if plan is None:
        plan = plan_instance(app, app.main, MAIN, IdAllocator(None), sup, app.main)
    out: dict[int, list] = {i: [] for i in range(app.nworkers)}
    shared_count = 0
    for name, decl in app.shared.items():
        spec = plan_shared(app, name)
        for p in app.decl_procs[decl.key]:
            out[p].append((0, sup, [spec]))
            shared_count += 1
    for proc, items in plan.hosts(app).items():
        out[proc].append((MAIN, sup, items))
    return out, plan.node_count(app), shared_count
