"""build_app: config checked against a registry; errors with TOML paths; shared nodes and processes."""

from __future__ import annotations

import pytest

from megflow_mp.config import load_config_string
from megflow_mp.errors import ConfigError
from megflow_mp.graph import SHARED, DynBinding, Endpoint, LeafDecl, SubDecl, build_app
from megflow_mp.registry import builtin_registry, register, res_register


@register(outputs=["out"])
class GSrc:
    def __init__(self, name, args):
        pass

    def exec(self):
        pass


@register(inputs=["inp"])
class GSink:
    def __init__(self, name, args):
        pass

    def exec(self):
        pass


@register(inputs=["inp:[]"], outputs=["out:{}"])
class GMix:
    def __init__(self, name, args):
        pass

    def exec(self):
        pass


@res_register()
class GModel:
    def __init__(self, name, args):
        pass


def registry():
    return builtin_registry().add_modules([__name__])


def build(text: str, file: str = "app.toml"):
    return build_app(load_config_string(text, file=file), registry(), file)


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(text)
    return info.value


def graph(body: str, name: str = "g", head: str = "") -> str:
    return f'main = "g"\n{head}\n[[graphs]]\nname = "{name}"\n{body}'


PAIR = graph('nodes = [{ name = "a", ty = "GSrc" }, { name = "b", ty = "GSink" }]\n'
             'connections = [{ cap = 4, ports = ["a:out", "b:inp"] }]\n')


# --- a valid graph --------------------------------------------------------------------------------------


def test_simple_pair():
    app = build(PAIR)
    tpl = app.templates["g"]
    assert app.main == "g" and app.file == "app.toml"
    (conn,) = tpl.conns
    assert (conn.cap, conn.senders, conn.receivers) == (4, (Endpoint("a", "out"),), (Endpoint("b", "inp"),))
    assert app.procs == (("g/a", 0), ("g/b", 0))
    assert dict(app.decl_procs) == {"g/a": (0,), "g/b": (1,)}
    assert isinstance(tpl.leaves["a"], LeafDecl) and tpl.leaves["a"].ntype.name == "GSrc"


def test_node_args_include_the_name():
    app = build(graph('nodes = [{ name = "a", ty = "GSrc", k = 3, res = [] }]\n'))
    assert dict(app.templates["g"].leaves["a"].args) == {"name": "a", "k": 3}


def test_sender_and_receiver_order_does_not_matter():
    app = build(graph('nodes = [{ name = "a", ty = "GSrc" }, { name = "b", ty = "GSink" }]\n'
                      'connections = [{ cap = 1, ports = ["b:inp", "a:out"] }]\n'))
    (conn,) = app.templates["g"].conns
    assert conn.senders == (Endpoint("a", "out"),) and conn.receivers == (Endpoint("b", "inp"),)


# --- errors name the TOML path and the file --------------------------------------------------------------


def test_unknown_node_type_lists_known_ones():
    err = error(graph('nodes = [{ name = "a", ty = "GSrc" }, { name = "b", ty = "Nope" }]\n'))
    assert (err.file, err.path) == ("app.toml", "graphs[0].nodes[1].ty")
    assert "unknown node type 'Nope'" in err.message
    assert "GSrc" in err.message and "Transform" in err.message and "graphs: g" in err.message
    assert str(err).startswith("app.toml: graphs[0].nodes[1].ty: unknown node type")


def test_undeclared_port_names_node_and_ports():
    err = error(graph('nodes = [{ name = "a", ty = "GSrc" }, { name = "b", ty = "GSink" }]\n'
                      'connections = [{ cap = 4, ports = ["a:out", "b:input"] }]\n'))
    assert err.path == "graphs[0].connections[0].ports[1]"
    assert err.message == "node 'b' (type GSink) has no port 'input'; inputs: inp; outputs: none"


def test_unknown_node_in_connection():
    err = error(graph('nodes = [{ name = "a", ty = "GSrc" }]\nconnections = [{ cap = 4, ports = ["a:out", "zz:inp"] }]\n'))
    assert err.path == "graphs[0].connections[0].ports[1]"
    assert "no node 'zz' in graph 'g'" in err.message and "nodes here: a" in err.message


def test_connection_without_sender():
    err = error(graph('nodes = [{ name = "a", ty = "GSink" }, { name = "b", ty = "GSink" }]\n'
                      'connections = [{ cap = 4, ports = ["a:inp", "b:inp"] }]\n'))
    assert err.path == "graphs[0].connections[0]" and "no sending port" in err.message


def test_connection_without_receiver():
    err = error(graph('nodes = [{ name = "a", ty = "GSrc" }, { name = "b", ty = "GSrc" }]\n'
                      'connections = [{ cap = 4, ports = ["a:out", "b:out"] }]\n'))
    assert err.path == "graphs[0].connections[0]" and "no receiving port" in err.message


def test_undeclared_resource_name():
    err = error(graph('nodes = [{ name = "a", ty = "GSrc", res = ["model"] }]\n'))
    assert err.path == "graphs[0].nodes[0].res[0]"
    assert "resource 'model'" in err.message


def test_unknown_resource_type():
    err = error(graph('nodes = [{ name = "a", ty = "GSrc", res = ["m"] }]\n',
                      head='[[resources]]\nname = "m"\nty = "Nope"\n'))
    assert err.path == "resources"
    assert "unknown type 'Nope'" in err.message and "GModel" in err.message


def test_resources_global_and_local_are_accepted():
    app = build(graph('nodes = [{ name = "a", ty = "GSrc", res = ["m", "local"] }]\n'
                      'resources = [{ name = "local", ty = "GModel", size = 2 }]\n',
                      head='[[resources]]\nname = "m"\nty = "GModel"\n'))
    assert app.templates["g"].leaves["a"].res == ("m", "local")
    assert dict(app.templates["g"].resources["local"][1]) == {"size": 2}
    assert app.global_resources["m"][0] == "GModel"


def test_graph_input_must_name_an_input_port():
    err = error('main = "g"\n[[graphs]]\nname = "g"\n[[graphs]]\nname = "s"\n'
                'nodes = [{ name = "a", ty = "GSrc" }]\ninputs = [{ name = "i", cap = 2, ports = ["a:out"] }]\n')
    assert err.path == "graphs[1].inputs[0].ports[0]" and "must name an input port" in err.message


def test_graph_cannot_contain_itself():
    err = error(graph('nodes = [{ name = "me", ty = "g" }]\n'))
    assert err.path == "graphs[0]" and "contains itself" in err.message


def test_shared_node_must_be_a_node_type():
    err = error(graph("", head='[[nodes]]\nname = "x"\nty = "g"\n'))
    assert err.path == "nodes[0].ty" and "must be a node type" in err.message


# --- list and dict ports ---------------------------------------------------------------------------------


def test_list_port_tags_are_numbered_in_order():
    app = build(graph('nodes = [{ name = "a", ty = "GSrc" }, { name = "b", ty = "GSrc" }, { name = "m", ty = "GMix" },'
                      ' { name = "z", ty = "GSink" }]\n'
                      'connections = [{ cap = 1, ports = ["a:out", "m:inp"] }, { cap = 1, ports = ["b:out", "m:inp"] },'
                      ' { cap = 1, ports = ["m:out:k", "z:inp"] }]\n'))
    conns = app.templates["g"].conns
    assert [c.receivers[0].tag for c in conns[:2]] == ["0", "1"]
    assert conns[2].senders == (Endpoint("m", "out", "k"),)


def test_list_port_tag_must_be_an_index():
    err = error(graph('nodes = [{ name = "a", ty = "GSrc" }, { name = "m", ty = "GMix" }]\n'
                      'connections = [{ cap = 1, ports = ["a:out", "m:inp:x"] }]\n'))
    assert err.path == "graphs[0].connections[0].ports[1]" and "must be an index" in err.message


def test_dict_port_needs_a_tag():
    err = error(graph('nodes = [{ name = "m", ty = "GMix" }, { name = "z", ty = "GSink" }]\n'
                      'connections = [{ cap = 1, ports = ["m:out", "z:inp"] }]\n'))
    assert err.path == "graphs[0].connections[0].ports[0]" and "give a tag" in err.message


def test_tag_on_a_single_port_is_dropped():
    app = build(graph('nodes = [{ name = "a", ty = "GSrc" }, { name = "b", ty = "GSink" }]\n'
                      'connections = [{ cap = 1, ports = ["a:out:x", "b:inp"] }]\n'))
    assert app.templates["g"].conns[0].senders == (Endpoint("a", "out"),)


# --- subgraphs and dynamic bindings --------------------------------------------------------------------------


DYN = '''main = "g"
[[graphs]]
name = "s1"
nodes = [{ name = "k", ty = "GSink" }]
inputs = [{ name = "i", cap = 2, ports = ["k:inp"] }]
[[graphs]]
name = "s2"
nodes = [{ name = "t", ty = "Transform" }, { name = "k", ty = "GSink" }]
inputs = [{ name = "i", cap = 2, ports = ["t:inp"] }]
connections = [{ cap = 1, ports = ["t:out", "k:inp"] }]
[[graphs]]
name = "g"
nodes = [{ name = "a", ty = "GSrc" }, { name = "d", ty = "DynDemux" }, { name = "sub", ty = "s1|s2", x = 1 }]
connections = [{ cap = 8, ports = ["a:out", "d:inp"] }, { cap = 3, ports = ["d:out", "sub:i"] }]
'''


def test_dynamic_binding_detected():
    app = build(DYN)
    tpl = app.templates["g"]
    assert dict(tpl.dynamic) == {("d", "out"): DynBinding("sub", "i", 3)}
    assert len(tpl.conns) == 1  # the dynamic connection is not a channel
    sub = tpl.subs["sub"]
    assert isinstance(sub, SubDecl) and sub.types == ("s1", "s2") and sub.args["x"] == 1
    assert {k for k, _ in app.procs} == {"g/a", "g/d", "s1/k", "s2/t", "s2/k"}


def test_dynamic_port_needs_a_subgraph():
    err = error(graph('nodes = [{ name = "d", ty = "DynDemux" }, { name = "z", ty = "GSink" }]\n'
                      'connections = [{ cap = 1, ports = ["d:out", "z:inp"] }]\n'))
    assert err.path == "graphs[0].connections[0]" and "exactly one subgraph node" in err.message


def test_subgraph_node_unknown_port():
    err = error(DYN.replace('"sub:i"', '"sub:j"'))
    assert err.path == "graphs[2].connections[1].ports[1]"
    assert "subgraph node 'sub' (s1|s2) has no port 'j'; inputs: i" in err.message


def test_unused_graphs_get_no_processes():
    app = build(PAIR + '[[graphs]]\nname = "spare"\nnodes = [{ name = "x", ty = "GSrc" }]\n')
    assert "spare" in app.templates
    assert "spare/x" not in app.decls


# --- shared nodes and processes -------------------------------------------------------------------------------


SHARED_CFG = '''main = "g"
[[nodes]]
name = "hub"
ty = "Transform"
cloned = 2
[[nodes]]
name = "unused"
ty = "GSink"
[[graphs]]
name = "s"
nodes = [{ name = "k", ty = "GSink", cloned = 3 }]
inputs = [{ name = "i", cap = 2, ports = ["hub:inp"] }]
connections = [{ cap = 5, ports = ["hub:out", "k:inp"] }]
[[graphs]]
name = "g"
nodes = [{ name = "a", ty = "GSrc" }, { name = "d", ty = "DynDemux" }, { name = "sub", ty = "s" }]
connections = [{ cap = 8, ports = ["a:out", "d:inp"] }, { cap = 3, ports = ["d:out", "sub:i"] }]
'''


def test_shared_nodes_and_cloned_processes():
    app = build(SHARED_CFG)
    assert set(app.shared) == {"hub"}  # "unused" is declared but no graph connects it
    assert app.shared["hub"].key == f"{SHARED}/hub" and app.shared["hub"].shared
    assert app.procs == (("g/a", 0), ("g/d", 0), ("s/k", 0), ("s/k", 1), ("s/k", 2), ("@/hub", 0), ("@/hub", 1))
    assert app.decl_procs["s/k"] == (2, 3, 4) and app.decl_procs["@/hub"] == (5, 6)
    assert app.nworkers == 7


@pytest.mark.parametrize("input_cap, expected", [(2, 8), (9, 9)])
def test_shared_input_channel_cap_is_the_largest(input_cap, expected):
    text = SHARED_CFG.replace('"a:out", "d:inp"', '"a:out", "d:inp", "hub:inp"')
    app = build(text.replace('inputs = [{ name = "i", cap = 2,', f'inputs = [{{ name = "i", cap = {input_cap},'))
    assert app.shared_caps[("hub", "inp", None)] == expected
    assert set(app.shared_chans) == {("hub", "inp", None)}


def test_errors_in_an_included_file_name_that_file_and_its_own_index(tmp_path):
    from megflow_mp.config import load_config
    from megflow_mp.errors import ConfigError
    from megflow_mp.graph import build_app
    from megflow_mp.registry import builtin_registry

    (tmp_path / "main.toml").write_text('include = ["more.toml"]\nmain = "g"\n[[graphs]]\nname = "g"\n'
                                        'nodes = [{ name = "a", ty = "Transform" }]\n')
    (tmp_path / "more.toml").write_text('[[graphs]]\nname = "h"\nnodes = [{ name = "b", ty = "Nope" }]\n')
    config = load_config(tmp_path / "main.toml")
    with pytest.raises(ConfigError) as err:
        build_app(config, builtin_registry(), str(tmp_path / "main.toml"))
    assert err.value.file.endswith("more.toml")
    assert err.value.path == "graphs[0].nodes[0].ty"
    assert "unknown node type 'Nope'" in str(err.value) and "Transform" in str(err.value)
