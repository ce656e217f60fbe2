"""Instance planning: turn one graph template into concrete node instances and channels.

:func:`plan_instance` is used twice: by the supervisor for the main graph before any fork (static
instances) and by a creator node (DynDemux, a video server) at run time for each new address
(dynamic instances). It is a pure function of the :class:`~megflow_mp.graph.App`, which every
process holds (inherited at fork), so any process can plan an instance and send each host its part.

Vocabulary: a *channel* is one receiving port element of one node instance (identified by an int
unique in the app); a :class:`Dest` is where a sender delivers: the channel, the processes hosting
its replicas (they compete for its messages) and whether the receiver is a shared node (then the
sender stamps the envelope with its instance id, the *route*).
"""

from __future__ import annotations

import copyreg
import itertools
from dataclasses import dataclass, field
from types import MappingProxyType

from .graph import App, Endpoint, LeafDecl, Template



def _frozen(d: dict) -> MappingProxyType:
    return MappingProxyType(d)


copyreg.pickle(MappingProxyType, lambda m: (_frozen, (dict(m),)))  # plans travel in messages

STATIC_ID_BASE = 1 << 20
DYNAMIC_ID_STRIDE = 1 << 40


@dataclass(frozen=True)
class Dest:
    chan: int
    procs: tuple[int, ...]
    shared: bool
    cap: int
    route: int | None = None  # for a shared receiver: the graph instance whose wiring it serves


@dataclass(frozen=True)
class InSpec:
    chan: int
    cap: int
    senders: int  # how many sender endpoints must close before the channel is closed


@dataclass(frozen=True)
class ResBinding:
    """A resource as a node sees it: ``scope`` 0 is the app, otherwise the owning graph instance."""

    scope: int
    name: str
    ty: str
    args: MappingProxyType


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
    visible: MappingProxyType  # resource bindings passed down by the subgraph node
    args: MappingProxyType


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

    def hosts(self, app: App) -> dict[int, list]:
        """Process index -> the NodeSpecs and RouteSpecs it must install."""
        out: dict[int, list] = {}
        for spec in self.nodes:
            for p in app.decl_procs[spec.decl]:
                out.setdefault(p, []).append(spec)
        for r in self.routes.values():
            for p in app.decl_procs[app.shared[r.shared].key]:
                out.setdefault(p, []).append(r)
        return out

    def node_count(self, app: App) -> int:
        return sum(len(app.decl_procs[s.decl]) for s in self.nodes)


class IdAllocator:
    """Unique channel and instance ids: static ones below ``DYNAMIC_ID_STRIDE``, dynamic ones in a
    range owned by the allocating process, so processes never need to agree on ids."""

    def __init__(self, proc: int | None, start: int = STATIC_ID_BASE):
        base = start if proc is None else (proc + 1) * DYNAMIC_ID_STRIDE
        self._next = itertools.count(base)

    def __call__(self) -> int:
        return next(self._next)


class _Planner:
    def __init__(self, app: App, ids: IdAllocator, plan: InstancePlan):
        self.app, self.ids, self.plan = app, ids, plan
        self.chans: dict[tuple, InSpec] = {}
        self.specs: dict[tuple, NodeSpec] = {}

    # endpoints are resolved to ("leaf", inst, node, port, tag, decl) or
    # ("shared", name, port, tag, inst, decl) where inst is the graph instance whose wiring uses it
    def expand(self, tpl: Template, inst: int, path: str, visible: dict, overlay: dict) -> dict:
        """Create the node specs of ``tpl`` (and its static subgraphs); return a resolver context."""
        res = dict(visible)
        for name, (ty, args) in tpl.resources.items():
            res[name] = ResBinding(inst, name, ty, args)
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
            passed = MappingProxyType({r: self.binding(r, res) for r in s.res})
            self.specs[(inst, node)].dynamic[port] = DynSpec(s.types, b.port, b.cap, f"{path}/{b.sub}", passed,
                                                             MappingProxyType({**overlay, **s.args}))
        for c in tpl.conns:
            senders = [x for e in c.senders for x in self.resolve(ctx, e, "outputs")]
            receivers = [x for e in c.receivers for x in self.resolve(ctx, e, "inputs")]
            self.connect(senders, receivers, c.cap)
        return ctx

    def binding(self, name: str, res: dict) -> ResBinding:
        if name in res:
            return res[name]
        ty, args = self.app.global_resources[name]
        return ResBinding(0, name, ty, args)

    def resolve(self, ctx: dict, e: Endpoint, io: str) -> list[tuple]:
        tpl = ctx["tpl"]
        if e.node in tpl.leaves:
            return [("leaf", ctx["inst"], e.node, e.port, e.tag, tpl.leaves[e.node])]
        if e.node in tpl.subs:
            sub = ctx["subs"][e.node]
            _, eps = getattr(sub["tpl"], io)[e.port]
            return [x for inner in eps for x in self.resolve(sub, inner, io)]
        return [("shared", e.node, e.port, e.tag, ctx["inst"], self.app.shared[e.node])]

    def decl_of(self, ep: tuple) -> LeafDecl:
        return ep[-1]

    def channel(self, ep: tuple, cap: int) -> tuple[int, Dest]:
        decl = self.decl_of(ep)
        procs = self.app.decl_procs[decl.key]
        if ep[0] == "shared":
            key = (ep[1], ep[2], ep[3])
            chan = self.app.shared_chans[key]
            return chan, Dest(chan, procs, True, self.app.shared_caps[key], ep[4])
        key = ep[1:5]
        spec = self.chans.get(key)
        if spec is None:
            spec = InSpec(self.ids(), cap, 0)
        spec = InSpec(spec.chan, max(spec.cap, cap), spec.senders)
        self.chans[key] = spec
        node = self.specs[(ep[1], ep[2])]
        _put(node.inputs, ep[3], ep[4], spec)
        return spec.chan, Dest(spec.chan, procs, False, spec.cap)

    def add_senders(self, ep: tuple, chan: int, n: int) -> None:
        if ep[0] == "shared":
            r = self.route(ep[1], ep[4])
            r.inputs[chan] = r.inputs.get(chan, 0) + n
            return
        key = ep[1:5]
        old = self.chans[key]
        self.chans[key] = new = InSpec(old.chan, old.cap, old.senders + n)
        _put(self.specs[(ep[1], ep[2])].inputs, ep[3], ep[4], new)

    def route(self, shared: str, route: int) -> RouteSpec:
        return self.plan.routes.setdefault((shared, route), RouteSpec(shared, route))

    def connect(self, senders: list, receivers: list, cap: int) -> None:
        dests = [(r, *self.channel(r, cap)) for r in receivers]
        for s in senders:
            replicas = self.decl_of(s).cloned
            for r, chan, dest in dests:
                self.add_senders(r, chan, replicas)
                self.add_output(s, dest)

    def add_output(self, s: tuple, dest: Dest) -> None:
        """Sender ``s`` delivers to ``dest``: a leaf's port gets it; a shared node gets it for the
        route of the instance whose wiring names it."""
        if s[0] == "shared":
            self.route(s[1], s[4]).outputs.setdefault((s[2], s[3]), []).append(dest)
        else:
            _append(self.specs[(s[1], s[2])].outputs, s[3], s[4], dest)


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
                  visible=MappingProxyType({}), overlay=MappingProxyType({}), entry_senders: int = 0,
                  exit_dests: dict | None = None) -> InstancePlan:
    """Plan one instance of ``graph`` with id ``inst``.

    ``entry_senders`` is how many sender endpoints the creator has on each graph input (0 for the
    main graph, whose inputs are unused); ``exit_dests`` maps graph output names to the creator's
    receiving :class:`Dest` for them. The returned plan lists every node instance and shared-node
    route to install, and ``entry`` gives the creator the destinations of each graph input.
    """
    plan = InstancePlan(inst, graph, path, creator)
    planner = _Planner(app, ids, plan)
    ctx = planner.expand(app.templates[graph], inst, path, dict(visible), dict(overlay))
    tpl = app.templates[graph]
    for name, (cap, eps) in tpl.inputs.items():
        receivers = [x for e in eps for x in planner.resolve(ctx, e, "inputs")]
        plan.entry[name] = []
        for r in receivers:
            chan, dest = planner.channel(r, cap)
            if entry_senders:
                planner.add_senders(r, chan, entry_senders)
            plan.entry[name].append(dest)
    for name, dests in (exit_dests or {}).items():
        _, eps = tpl.outputs[name]
        senders = [x for e in eps for x in planner.resolve(ctx, e, "outputs")]
        plan.exits[name] = sum(planner.decl_of(s).cloned for s in senders)
        for s in senders:
            for dest in dests:
                planner.add_output(s, dest)
    return plan
