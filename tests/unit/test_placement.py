"""Placement: the ``placement`` table of a node (checked with the config, errors naming the field)
and the layout of processes on machines (pure: Ray's answers for placed nodes are given)."""

from __future__ import annotations

import pytest

from megflow_mp.cluster.placement import Machine, demand, fits, layout
from megflow_mp.errors import ConfigError
from tests.unit.test_graph import build, graph

HEAD = """[[nodes]]
name = "det"
ty = "GSink"
cloned = 3
"""


def app(det: str = "", a: str = "", head: str = HEAD):
    return build(graph(f'nodes = [{{ name = "a", ty = "GSrc" {a}}}, {{ name = "b", ty = "GSink" }}]\n'
                       'connections = [{ cap = 4, ports = ["a:out", "b:inp", "det:inp"] }]\n', head=head + det))


def test_placement_is_read_in_rays_vocabulary():
    built = app(det='placement = { num_cpus = 1, num_gpus = 0.5, resources = { site_b = 1 } }\n')
    decl = built.decls["@/det"]
    assert dict(decl.placement["resources"]) == {"site_b": 1} and decl.placement["num_cpus"] == 1
    assert "placement" not in decl.args  # not a constructor argument
    assert demand(decl.placement) == {"CPU": 1.0, "GPU": 0.5, "site_b": 1.0}
    assert demand({}) == {} and demand({"num_cpus": 0}) == {}
    assert fits({"CPU": 1, "site_b": 1}, {"CPU": 2, "site_b": 1}) and not fits({"site_b": 1}, {"CPU": 8})


@pytest.mark.parametrize("value, field, words", [
    ("placement = 3", "placement", "must be a table"),
    ("placement = { num_cpu = 1 }", "placement.num_cpu", "unknown placement key 'num_cpu'"),
    ("placement = { num_cpus = -1 }", "placement.num_cpus", "number >= 0"),
    ("placement = { resources = { site_b = 0 } }", "placement.resources.site_b", "amount > 0"),
    ("placement = { resources = { CPU = 1 } }", "placement.resources.CPU", "use num_cpus"),
])
def test_a_bad_placement_is_an_error_naming_its_field(value, field, words):
    with pytest.raises(ConfigError) as info:
        app(det=value + "\n")
    assert field in str(info.value) and words in str(info.value) and "app.toml" in str(info.value)


def test_layout_placed_replicas_where_ray_put_them_replicas_dealt_the_rest_on_the_driver():
    built = app(a=', placement = { resources = { site_b = 1 } }')
    machines = [Machine("head", "10.0.0.1"), Machine("b", "10.0.0.2"), Machine("c", "10.0.0.3")]
    where = layout(built, machines, {"g/a": ["c"]})
    procs = {built.procs[p][0] + f"#{built.procs[p][1]}": m for p, m in where.items() if p < built.nworkers}
    assert procs == {"g/a#0": 2, "g/b#0": 0, "@/det#0": 0, "@/det#1": 1, "@/det#2": 2}
    assert where[built.nworkers] == 0  # the supervisor


def test_layout_deals_the_replicas_of_any_unplaced_cloned_node():
    built = build(graph('nodes = [{ name = "a", ty = "GSrc" }, { name = "b", ty = "GSink", cloned = 4 }]\n'
                        'connections = [{ cap = 4, ports = ["a:out", "b:inp"] }]\n'))
    where = layout(built, [Machine("head", "10.0.0.1"), Machine("b", "10.0.0.2")], {})
    procs = {built.procs[p][0] + f"#{built.procs[p][1]}": m for p, m in where.items() if p < built.nworkers}
    assert procs == {"g/a#0": 0, "g/b#0": 0, "g/b#1": 1, "g/b#2": 0, "g/b#3": 1}
    assert where[built.nworkers] == 0  # the supervisor
