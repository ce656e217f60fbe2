"""plan_instance: node specs, channels, sender counts, shared-node routes, subgraphs, args, resources."""

from __future__ import annotations

import pickle

import pytest

from megflow_mp.config import load_config_string
from megflow_mp.graph import build_app
from megflow_mp.plan import (DYNAMIC_ID_STRIDE, STATIC_ID_BASE, Dest, DynSpec, IdAllocator, InSpec, NodeSpec,
                             ResBinding, plan_instance)
from megflow_mp.registry import builtin_registry, register, res_register

INST = 7


@register(outputs=["out"])
class PSrc:
    def __init__(self, name, args):
        pass

    def exec(self):
        pass


@register(inputs=["inp"], outputs=["out"])
class PMid:
    def __init__(self, name, args):
        pass

    def exec(self):
        pass


@register(inputs=["inp:[]"])
class PJoin:
    def __init__(self, name, args):
        pass

    def exec(self):
        pass


@res_register()
class PRes:
    def __init__(self, name, args):
        pass


def app_of(text: str):
    return build_app(load_config_string(text), builtin_registry().add_modules([__name__]))


def plan(app, graph="g", **kwargs):
    return plan_instance(app, graph, INST, IdAllocator(None), 99, graph, **kwargs)


def by_path(p) -> dict[str, NodeSpec]:
    return {s.path: s for s in p.nodes}


def graph(nodes: str, conns: str, extra: str = "") -> str:
    return f'main = "g"\n{extra}\n[[graphs]]\nname = "g"\nnodes = [{nodes}]\nconnections = [{conns}]\n'


# --- channels and sender counts -------------------------------------------------------------------------


def test_pair_channel_and_destination():
    app = app_of(graph('{ name = "a", ty = "PSrc", cloned = 3 }, { name = "b", ty = "PMid", cloned = 2 }',
                       '{ cap = 4, ports = ["a:out", "b:inp"] }'))
    p = plan(app)
    nodes = by_path(p)
    assert set(nodes) == {"g/a", "g/b"}
    a, b = nodes["g/a"], nodes["g/b"]
    spec = b.inputs["inp"]
    assert spec.cap == 4 and spec.chan >= STATIC_ID_BASE
    assert spec.senders == 3  # every replica of a closes its end
    assert a.outputs == {"out": [Dest(spec.chan, app.decl_procs["g/b"], False, 4)]}
    assert b.outputs == {} and a.inputs == {}
    assert (a.inst, a.top, a.decl) == (INST, INST, "g/a")


def test_fan_in_shares_one_channel():
    app = app_of(graph('{ name = "a", ty = "PSrc" }, { name = "c", ty = "PSrc", cloned = 2 }, { name = "b", ty = "PMid" }',
                       '{ cap = 2, ports = ["a:out", "b:inp"] }, { cap = 6, ports = ["c:out", "b:inp"] }'))
    nodes = by_path(plan(app))
    spec = nodes["g/b"].inputs["inp"]
    assert spec.senders == 3 and spec.cap == 6  # the largest cap of the connections into it
    assert nodes["g/a"].outputs["out"][0].chan == nodes["g/c"].outputs["out"][0].chan == spec.chan


def test_fan_out_broadcasts():
    app = app_of(graph('{ name = "a", ty = "PSrc" }, { name = "b", ty = "PMid" }, { name = "c", ty = "PMid" }',
                       '{ cap = 2, ports = ["a:out", "b:inp", "c:inp"] }'))
    nodes = by_path(plan(app))
    dests = nodes["g/a"].outputs["out"]
    assert [d.chan for d in dests] == [nodes["g/b"].inputs["inp"].chan, nodes["g/c"].inputs["inp"].chan]
    assert len({d.chan for d in dests}) == 2


def test_list_port_elements_get_their_own_channels():
    app = app_of(graph('{ name = "a", ty = "PSrc" }, { name = "c", ty = "PSrc" }, { name = "j", ty = "PJoin" }',
                       '{ cap = 2, ports = ["a:out", "j:inp"] }, { cap = 2, ports = ["c:out", "j:inp"] }'))
    nodes = by_path(plan(app))
    inputs = nodes["g/j"].inputs["inp"]
    assert set(inputs) == {"0", "1"} and inputs["0"].chan != inputs["1"].chan
    assert nodes["g/a"].outputs["out"][0].chan == inputs["0"].chan
    assert nodes["g/c"].outputs["out"][0].chan == inputs["1"].chan


def test_channel_ids_are_unique_across_plans_sharing_an_allocator():
    app = app_of(graph('{ name = "a", ty = "PSrc" }, { name = "b", ty = "PMid" }', '{ cap = 1, ports = ["a:out", "b:inp"] }'))
    ids = IdAllocator(None)
    one = plan_instance(app, "g", ids(), ids, 99, "g")
    two = plan_instance(app, "g", ids(), ids, 99, "g")
    assert by_path(one)["g/b"].inputs["inp"].chan != by_path(two)["g/b"].inputs["inp"].chan


def test_id_allocator_ranges():
    assert IdAllocator(None)() == STATIC_ID_BASE
    first, second = IdAllocator(0), IdAllocator(1)
    assert first() == DYNAMIC_ID_STRIDE and second() == 2 * DYNAMIC_ID_STRIDE
    assert first() == DYNAMIC_ID_STRIDE + 1


def test_hosts_and_node_count():
    app = app_of(graph('{ name = "a", ty = "PSrc" }, { name = "b", ty = "PMid", cloned = 2 }',
                       '{ cap = 1, ports = ["a:out", "b:inp"] }'))
    p = plan(app)
    hosts = p.hosts(app)
    assert sorted(hosts) == [0, 1, 2]
    assert [s.path for s in hosts[1]] == [s.path for s in hosts[2]] == ["g/b"]
    assert p.node_count(app) == 3


def test_plan_pickles():
    app = app_of(graph('{ name = "a", ty = "PSrc", k = 1 }', ""))
    p = plan(app)
    back = pickle.loads(pickle.dumps(p))
    assert back.nodes[0].path == "g/a" and back.nodes[0].args["k"] == 1


# --- shared nodes -----------------------------------------------------------------------------------------------


SHARED = '''main = "g"
[[nodes]]
name = "hub"
ty = "PMid"
cloned = 2
[[graphs]]
name = "s"
nodes = [{ name = "k", ty = "PMid" }]
inputs = [{ name = "i", cap = 2, ports = ["hub:inp"] }]
connections = [{ cap = 5, ports = ["hub:out", "k:inp"] }]
[[graphs]]
name = "g"
nodes = [{ name = "a", ty = "PSrc", cloned = 3 }, { name = "k", ty = "PMid" }]
connections = [{ cap = 3, ports = ["a:out", "hub:inp"] }, { cap = 5, ports = ["hub:out", "k:inp"] }]
'''


def check_route(app, p, senders: int, k: NodeSpec, route_id: int = INST) -> None:
    """One route, keyed by the instance id the senders stamp, with inputs and outputs."""
    shared_chan = app.shared_chans[("hub", "inp", None)]
    (route,) = p.routes.values()
    assert (route.shared, route.route) == ("hub", route_id)
    assert route.inputs == {shared_chan: senders}
    assert route.outputs == {("out", None): [Dest(k.inputs["inp"].chan, app.decl_procs[k.decl], False, 5)]}
    assert k.inputs["inp"].senders == 2  # both replicas of the shared node close it


def test_route_of_a_shared_node_in_the_main_graph():
    app = app_of(SHARED)
    p = plan(app)
    nodes = by_path(p)
    assert set(nodes) == {"g/a", "g/k"}  # the shared node itself is not part of an instance
    shared_chan = app.shared_chans[("hub", "inp", None)]
    assert nodes["g/a"].outputs["out"] == [Dest(shared_chan, app.decl_procs["@/hub"], True,
                                                app.shared_caps[("hub", "inp", None)], p.inst)]
    check_route(app, p, 3, nodes["g/k"])  # three replicas of a close their route
    assert sorted(p.hosts(app)) == sorted(app.decl_procs["g/a"] + app.decl_procs["g/k"] + app.decl_procs["@/hub"])


def test_route_of_a_shared_node_in_a_dynamic_instance():
    text = SHARED.replace('{ name = "k", ty = "PMid" }]\nconnections = [',
                          '{ name = "k", ty = "PMid" }, { name = "d", ty = "DynDemux" }, { name = "sub", ty = "s" }]\n'
                          'connections = [{ cap = 2, ports = ["d:out", "sub:i"] }, ')
    app = app_of(text)
    assert "s/k" in app.decls
    p = plan_instance(app, "s", INST, IdAllocator(0), 1, "g/d#0", entry_senders=1)
    (k,) = p.nodes
    key = ("hub", "inp", None)
    assert app.shared_caps[key] == 3  # the largest of the main graph's 3 and the subgraph input's 2
    assert p.entry["i"] == [Dest(app.shared_chans[key], app.decl_procs["@/hub"], True, 3, INST)]
    check_route(app, p, 1, k)  # the creator closes it


def test_route_of_a_shared_node_in_a_static_subgraph():
    text = SHARED.replace('{ name = "k", ty = "PMid" }]\nconnections = [{ cap = 3, ports = ["a:out", "hub:inp"] }, '
                          '{ cap = 5, ports = ["hub:out", "k:inp"] }]',
                          '{ name = "sub", ty = "s" }]\nconnections = [{ cap = 3, ports = ["a:out", "sub:i"] }]')
    app = app_of(text)
    p = plan(app)
    k = by_path(p)["g/sub/k"]
    check_route(app, p, 3, k, route_id=k.inst)  # the subgraph instance whose wiring uses the shared node
    (a,) = [n for n in p.nodes if n.path == "g/a"]
    assert a.outputs["out"][0].route == k.inst  # so the sender in the parent stamps that route


# --- static subgraphs, args, resources ----------------------------------------------------------------------------


NESTED = '''main = "g"
[[resources]]
name = "glob"
ty = "PRes"
[[graphs]]
name = "inner"
nodes = [{ name = "x", ty = "PMid", y = 5, res = ["glob", "top", "own"] }]
inputs = [{ name = "j", cap = 2, ports = ["x:inp"] }]
resources = [{ name = "own", ty = "PRes" }]
[[graphs]]
name = "middle"
nodes = [{ name = "sub2", ty = "inner", res = ["top"], z = 3 }]
inputs = [{ name = "i", cap = 2, ports = ["sub2:j"] }]
[[graphs]]
name = "g"
nodes = [{ name = "a", ty = "PSrc", res = ["top"] }, { name = "sub", ty = "middle", res = ["top"], y = 1, w = 2 }]
connections = [{ cap = 4, ports = ["a:out", "sub:i"] }]
resources = [{ name = "top", ty = "PRes", size = 9 }]
'''


def test_nested_static_subgraphs_are_flattened():
    p = plan(app_of(NESTED))
    nodes = by_path(p)
    assert set(nodes) == {"g/a", "g/sub/sub2/x"}
    x = nodes["g/sub/sub2/x"]
    assert nodes["g/a"].outputs["out"][0].chan == x.inputs["inp"].chan
    assert x.inputs["inp"].senders == 1 and x.inputs["inp"].cap == 4
    assert x.decl == "inner/x" and x.top == INST and x.inst not in (INST,)


def test_subgraph_args_are_overlaid_inner_values_win():
    x = by_path(plan(app_of(NESTED)))["g/sub/sub2/x"]
    assert x.args == {"name": "x", "y": 5, "w": 2, "z": 3}


def test_resource_scopes():
    nodes = by_path(plan(app_of(NESTED)))
    a, x = nodes["g/a"], nodes["g/sub/sub2/x"]
    assert x.res["glob"] == ResBinding(0, "glob", "PRes", {})
    assert a.res["top"].scope == INST and dict(a.res["top"].args) == {"size": 9}
    assert x.res["top"] == a.res["top"]  # passed down two levels, same scope
    assert x.res["own"].scope == x.inst != INST  # one per subgraph instance


def test_multi_type_subgraph_needs_a_dynamic_port():
    app = app_of(NESTED.replace('ty = "middle"', 'ty = "middle|inner"'))
    with pytest.raises(ValueError, match="cannot pick a type by tag"):
        plan(app)


# --- dynamic subgraphs: entry and exits ----------------------------------------------------------------------------


DYN = '''main = "g"
[[graphs]]
name = "s"
nodes = [{ name = "t", ty = "PMid", cloned = 2 }]
inputs = [{ name = "i", cap = 2, ports = ["t:inp"] }]
outputs = [{ name = "o", cap = 2, ports = ["t:out"] }]
[[graphs]]
name = "g"
nodes = [{ name = "a", ty = "PSrc" }, { name = "d", ty = "DynDemux" }, { name = "sub", ty = "s", q = 1 }]
connections = [{ cap = 8, ports = ["a:out", "d:inp"] }, { cap = 3, ports = ["d:out", "sub:i"] }]
'''


def test_creator_gets_a_dyn_spec():
    nodes = by_path(plan(app_of(DYN)))
    assert set(nodes) == {"g/a", "g/d"}  # the dynamic subgraph is planned per address, later
    dyn = nodes["g/d"].dynamic["out"]
    assert isinstance(dyn, DynSpec)
    assert (dyn.types, dyn.port, dyn.cap, dyn.path) == (("s",), "i", 3, "g/sub")
    assert dyn.args["q"] == 1


def test_dynamic_instance_entry_and_exits():
    app = app_of(DYN)
    back = Dest(12345, (0,), False, 2)
    p = plan_instance(app, "s", INST, IdAllocator(0), 1, "g/sub#5", entry_senders=1, exit_dests={"o": [back]})
    (t,) = p.nodes
    assert t.path == "g/sub#5/t"
    assert p.entry == {"i": [Dest(t.inputs["inp"].chan, app.decl_procs["s/t"], False, 2)]}
    assert t.inputs["inp"].senders == 1  # the creator
    assert t.outputs["out"] == [back]
    assert p.exits == {"o": 2}  # both replicas of t close the creator's channel
    assert t.inputs["inp"].chan >= DYNAMIC_ID_STRIDE


def test_an_instance_keeps_its_nodes_on_the_creators_machine():
    """``near`` (a cluster: the processes of the creator's machine) picks the replicas of each
    non-shared node there; senders, closers and exits count only them."""
    app = app_of(DYN)
    back = Dest(12345, (0,), False, 2)
    procs = app.decl_procs["s/t"]  # two replicas
    p = plan_instance(app, "s", INST, IdAllocator(0), 1, "g/sub#5", entry_senders=1, exit_dests={"o": [back]},
                      near=frozenset({1, procs[1]}))
    (t,) = p.nodes
    assert p.entry["i"][0].procs == (procs[1],)
    assert sorted(p.hosts(app)) == [procs[1]] and p.node_count(app) == 1
    assert t.inputs["inp"].procs == (1,)  # the creator is its one sender
    assert p.exits == {"o": 1} and p.exit_procs == {"o": (procs[1],)}
    elsewhere = plan_instance(app, "s", INST, IdAllocator(0), 1, "g/sub#6", entry_senders=1,
                              exit_dests={"o": [back]}, near=frozenset({1}))
    assert elsewhere.entry["i"][0].procs == procs  # no replica on the creator's machine: all of them
    assert elsewhere.exit_procs == {"o": procs}


def test_main_graph_inputs_have_no_senders():
    app = app_of(DYN)
    p = plan_instance(app, "s", INST, IdAllocator(None), 1, "s")
    assert p.nodes[0].inputs["inp"] == InSpec(p.entry["i"][0].chan, 2, 0)
    assert p.exits == {}
