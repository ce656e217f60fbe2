"""The presentation layer: models, port strings and the in-file consistency checks."""

from __future__ import annotations

import dataclasses

import pydantic
import pytest

from megflow_mp.config import Config, Connection, NamedConn, Node, PortRef, load_config_string
from megflow_mp.errors import ConfigError

CAT_FINDER_IMAGE = """
main = "cat_finder_image"

[[graphs]]
name = "subgraph"
inputs = [{ name = "inp", cap = 16, ports = ["det:inp"] }]
outputs = [{ name = "out", cap = 16, ports = ["redis_proxy:out"] }]
connections = [
  { cap = 16, ports = ["det:out", "reid:inp"] },
  { cap = 16, ports = ["reid:out", "redis_proxy:inp"] },
]

    [[graphs.nodes]]
    name = "det"
    ty = "Detect"
    model = "yolox-nano"
    conf = 0.25
    nms = 0.45
    tsize = 640
    path = "models/yolox_nano.pkl"

    [[graphs.nodes]]
    name = "reid"
    ty = "Reid"
    thres = 1300
    path = "models/aligned_reid.pkl"

    [[graphs.nodes]]
    name = "redis_proxy"
    ty = "RedisProxy"
    ip = "127.0.0.1"
    port = "6379"
    mode = "save"
    prefix = "feature."

[[graphs]]
name = "cat_finder_image"
connections = [
  { cap = 16, ports = ["source:out", "destination:inp"] },
  { cap = 16, ports = ["source:inp", "destination:out"] }
]

    [[graphs.nodes]]
    name = "source"
    ty = "ImageServer"
    port = 8081
    response = "json"

    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""

CAT_FINDER_VIDEO = """
main = "cat_finder_video"

[[nodes]]
name = "det"
ty = "Detect"
model = "yolox-tiny"
conf = 0.25
nms = 0.45
tsize = 640
path = "models/yolox_tiny.pkl"
interval = 5

[[nodes]]
name = "reid_video"
ty = "ReIDVideo"
path = "models/aligned_reid.pkl"

[[nodes]]
name = "redis_proxy"
ty = "RedisProxy"
ip = "127.0.0.1"
port = "6379"
mode = "search"
prefix = "feature."

[[graphs]]
name = "subgraph"
inputs = [{ name = "inp", cap = 16, ports = ["det:inp"] }]
outputs = [{ name = "out", cap = 16, ports = ["redis_proxy:out"] }]
connections = [
  { cap = 16, ports = ["det:out", "track:inp"] },
  { cap = 16, ports = ["track:out", "shaper:inp"] },
  { cap = 16, ports = ["shaper:out", "reid_video:inp"] },
  { cap = 16, ports = ["reid_video:out", "redis_proxy:inp"] },
]

    [[graphs.nodes]]
    name = "track"
    ty = "Track"

    [[graphs.nodes]]
    name = "shaper"
    ty = "Shaper"
    mode = "BEST"

[[graphs]]
name = "cat_finder_video"
connections = [
  { cap = 16, ports = ["source:out", "destination:inp"] },
  { cap = 16, ports = ["source:inp", "destination:out"] }
]

    [[graphs.nodes]]
    name = "source"
    ty = "VideoServer"
    port = 8082

    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""

MAIN_A = 'main = "a"\n'
GRAPH = '[[graphs]]\nname = "a"\n'
GRAPH_A = MAIN_A + GRAPH


def config_error(text: str) -> str:
    """Load ``text`` as ``app.toml``, expect a ConfigError, return its message."""
    with pytest.raises(ConfigError) as info:
        load_config_string(text, file="app.toml")
    assert info.value.file == "app.toml"
    return str(info.value)


# --- the seed chapter's examples -------------------------------------------------------------------


def test_cat_finder_image_loads_with_node_args():
    config = load_config_string(CAT_FINDER_IMAGE)
    assert config.main == "cat_finder_image"
    sub = config.graph("subgraph")
    assert [n.name for n in sub.nodes] == ["det", "reid", "redis_proxy"]
    det = sub.nodes[0]
    assert (det.ty, det.cloned, det.res) == ("Detect", 1, [])
    assert det.args == {
        "model": "yolox-nano", "conf": 0.25, "nms": 0.45, "tsize": 640, "path": "models/yolox_nano.pkl",
    }
    assert sub.inputs[0] == NamedConn(name="inp", cap=16, ports=["det:inp"])
    assert [c.ports for c in sub.connections] == [["det:out", "reid:inp"], ["reid:out", "redis_proxy:inp"]]
    main = config.graph("cat_finder_image")
    assert main.nodes[0].args == {"port": 8081, "response": "json"}
    assert main.nodes[1].ty == "subgraph" and main.nodes[1].args == {}


def test_cat_finder_video_has_shared_nodes():
    config = load_config_string(CAT_FINDER_VIDEO)
    assert [n.name for n in config.nodes] == ["det", "reid_video", "redis_proxy"]
    assert config.nodes[0].args["interval"] == 5
    assert config.nodes[2].args["mode"] == "search"
    assert [n.name for n in config.graph("subgraph").nodes] == ["track", "shaper"]
    assert config.graph("subgraph").connections[2].refs == [
        PortRef("shaper", "out"), PortRef("reid_video", "inp"),
    ]
    assert config.graph("missing") is None


# --- models ----------------------------------------------------------------------------------------


def test_node_args_exclude_declared_fields_and_are_a_copy():
    node = Node(name="det", ty="Detect", cloned=2, res=["pool"], conf=0.25)
    assert node.args == {"conf": 0.25}
    node.args["conf"] = 1.0
    assert node.args == {"conf": 0.25}


def test_models_are_frozen():
    node = Node(name="det", ty="Detect")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        node.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        PortRef("a", "b").node = "c"


def test_connection_rejects_unknown_field_with_its_location():
    with pytest.raises(pydantic.ValidationError) as info:
        Connection.model_validate({"cap": 1, "ports": ["a:o", "b:i"], "capacity": 2})
    assert info.value.errors()[0]["loc"] == ("capacity",)


@pytest.mark.parametrize(
    "text, expected",
    [("det:out", PortRef("det", "out")), ("demux:out:3", PortRef("demux", "out", "3"))],
)
def test_port_ref_parse(text, expected):
    assert PortRef.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text, reason",
    [("det", "got 1 part"), ("a:b:c:d", "got 4 part"), ("det:", "empty part"), (":out", "empty part"),
     ("det: out", "whitespace"), ("", "got 1 part")],
)
def test_port_ref_parse_rejects(text, reason):
    with pytest.raises(ValueError, match=reason) as info:
        PortRef.parse(text)
    assert repr(text) in str(info.value)


# --- schema errors, as ConfigError with a TOML path -------------------------------------------------


def test_unknown_field_in_config():
    msg = config_error('mian = "x"\n' + GRAPH_A)
    assert msg == "app.toml: mian: unknown field 'mian' (allowed: include, plugins, auth, resources, nodes, graphs, main)"


def test_auth_tokens_is_relative_to_the_config_and_its_table_is_closed(tmp_path):
    from megflow_mp.config import load_config

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "app.toml").write_text(GRAPH_A + '\n[auth]\ntokens = "../tokens.toml"\n')
    assert load_config(tmp_path / "sub" / "app.toml").auth.tokens == str(tmp_path / "tokens.toml")
    assert "auth.user: unknown field 'user' (allowed: tokens)" in config_error(GRAPH_A + '\n[auth]\nuser = "x"\ntokens = "t"\n')


def test_unknown_field_in_graph():
    msg = config_error(GRAPH_A + "conections = []\n")
    assert msg == (
        "app.toml: graphs[0].conections: unknown field 'conections' "
        "(allowed: name, resources, nodes, inputs, outputs, connections)"
    )


def test_unknown_field_in_connection():
    msg = config_error(GRAPH_A + 'connections = [{ cap = 1, ports = ["a:o", "b:i"], size = 3 }]\n')
    assert msg == "app.toml: graphs[0].connections[0].size: unknown field 'size' (allowed: cap, ports)"


def test_bad_port_string_points_at_the_port():
    msg = config_error(GRAPH_A + 'connections = [{ cap = 1, ports = ["a:o", "b"] }]\n')
    assert msg.startswith("app.toml: graphs[0].connections[0].ports[1]: bad port 'b'")


def test_bad_port_in_named_input():
    msg = config_error(GRAPH_A + 'inputs = [{ name = "inp", cap = 1, ports = ["det::x"] }]\n')
    assert msg == "app.toml: graphs[0].inputs[0].ports[0]: bad port 'det::x': empty part in 'node:port[:tag]'"


def test_cap_zero():
    msg = config_error(GRAPH_A + 'connections = [{ cap = 0, ports = ["a:o", "b:i"] }]\n')
    assert msg == "app.toml: graphs[0].connections[0].cap: expected an integer >= 1, got 0"


def test_connection_needs_two_ports():
    msg = config_error(GRAPH_A + 'connections = [{ cap = 4, ports = ["a:o"] }]\n')
    assert msg == "app.toml: graphs[0].connections[0].ports: expected at least 2 entries, got 1"


def test_wrong_type_is_named():
    msg = config_error(GRAPH_A + '[[graphs.nodes]]\nname = "n"\nty = "T"\ncloned = "2"\n')
    assert msg == "app.toml: graphs[0].nodes[0].cloned: expected an integer, got '2'"


def test_missing_name():
    msg = config_error(GRAPH_A + '[[graphs.nodes]]\nty = "T"\n')
    assert msg == "app.toml: graphs[0].nodes[0].name: field required"


def test_missing_name_hints_at_a_typo():
    msg = config_error('main = "a"\n[[graphs]]\nnmae = "a"\n')
    assert msg == "app.toml: graphs[0].name: field required (unknown field(s) given: 'nmae'; a typo?)"


def test_missing_main():
    msg = config_error('[[graphs]]\nname = "a"\n')
    assert msg == "app.toml: main: field required"


def test_main_names_no_graph():
    msg = config_error('main = "b"\n[[graphs]]\nname = "a"\n[[graphs]]\nname = "c"\n')
    assert msg == "app.toml: main: main graph 'b' is not defined (graphs: 'a', 'c')"


def test_duplicate_node_names_in_a_graph():
    node = '[[graphs.nodes]]\nname = "det"\nty = "T"\n'
    msg = config_error(GRAPH_A + node + node)
    assert msg == (
        "app.toml: graphs[0].nodes[1].name: duplicate node name 'det' (first defined at graphs[0].nodes[0].name)"
    )


def test_duplicate_top_level_nodes():
    node = '[[nodes]]\nname = "det"\nty = "T"\n'
    msg = config_error(GRAPH_A + node + node)
    assert msg == "app.toml: nodes[1].name: duplicate node name 'det' (first defined at nodes[0].name)"


def test_graph_node_may_not_reuse_a_top_level_name():
    msg = config_error(GRAPH_A + '[[graphs.nodes]]\nname = "det"\nty = "T"\n[[nodes]]\nname = "det"\nty = "T"\n')
    assert msg.startswith("app.toml: graphs[0].nodes[0].name: node name 'det' is already used by a top-level node")
    assert "nodes[0].name" in msg


def test_duplicate_graph_names():
    msg = config_error(GRAPH_A + '[[graphs]]\nname = "a"\n')
    assert msg == "app.toml: graphs[1].name: duplicate graph name 'a' (first defined at graphs[0].name)"


def test_duplicate_resources_per_scope():
    res = '[[resources]]\nname = "pool"\nty = "Pool"\n'
    assert config_error(MAIN_A + res + res + GRAPH).startswith("app.toml: resources[1].name: duplicate resource name 'pool'")
    inner = '[[graphs.resources]]\nname = "pool"\nty = "Pool"\n'
    msg = config_error(GRAPH_A + inner + inner)
    assert msg.startswith("app.toml: graphs[0].resources[1].name: duplicate resource name 'pool'")
    # the same name in two scopes is fine
    assert load_config_string(MAIN_A + res + GRAPH + inner).graphs[0].resources[0].name == "pool"


def test_duplicate_named_inputs_and_outputs():
    inputs = 'inputs = [{ name = "inp", cap = 1, ports = ["a:i"] }, { name = "inp", cap = 1, ports = ["b:i"] }]\n'
    assert config_error(GRAPH_A + inputs).startswith("app.toml: graphs[0].inputs[1].name: duplicate input name 'inp'")
    outputs = inputs.replace("inputs", "outputs")
    msg = config_error(GRAPH_A + outputs)
    assert msg.startswith("app.toml: graphs[0].outputs[1].name: duplicate output name 'inp'")


def test_resource_args_pass_through():
    config = load_config_string(MAIN_A + '[[resources]]\nname = "r"\nty = "Redis"\nurl = "redis://x"\n' + GRAPH)
    assert config.resources[0].args == {"url": "redis://x"}
    assert isinstance(config, Config)
