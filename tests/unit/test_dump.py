"""Drawing the built graph: DOT text, rendering through ``dot``, the CLI's ``dump``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from megflow_mp import dump
from megflow_mp.cli import main
from megflow_mp.config import load_config, load_config_string
from megflow_mp.errors import MegFlowError
from megflow_mp.graph import build_app
from megflow_mp.plugins import load_registry
from megflow_mp.registry import builtin_registry

ROOT = Path(__file__).resolve().parents[2]
LOGICAL = ROOT / "plugins" / "logical_test"


@pytest.fixture(scope="module")
def logical_app():
    config = load_config(LOGICAL / "logical_test.toml")
    return build_app(config, load_registry(LOGICAL), str(LOGICAL / "logical_test.toml"))


def small_app(text: str):
    return build_app(load_config_string(text), builtin_registry())


def test_logical_test_nodes_and_clusters(logical_app):
    text = dump.to_dot(logical_app)
    assert text.startswith("digraph megflow {") and text.rstrip().endswith("}")
    assert 'label="graph logical_test (main)"' in text
    assert 'label="graph TransGraph0"' in text and 'label="graph TransGraph1"' in text
    assert '"TransGraph0/check" [label="check\\nChecker"]' in text
    assert '"logical_test/destination" [label="destination\\nTransGraph0|TransGraph1", shape=component]' in text
    assert '"@/shared" [label="shared\\nRepeatProcess"' in text
    # shared nodes are declared before (outside) every cluster
    assert text.index('"@/collector" [') < text.index("subgraph cluster_")


def test_logical_test_edges(logical_app):
    text = dump.to_dot(logical_app)
    assert '"logical_test/source" -> "logical_test/demux" [label="out -> inp\\ncap 16", style=solid]' in text
    assert '"TransGraph1/check" -> "@/collector" [label="out -> inp\\ncap 4", style=solid]' in text
    assert '"@/shared" -> "TransGraph0/trans"' in text
    assert '"TransGraph0/inputs/whatever" -> "@/shared"' in text
    dyn = [line for line in text.splitlines() if '"logical_test/demux" -> "logical_test/destination"' in line]
    assert len(dyn) == 1 and "per address" in dyn[0] and "style=dashed" in dyn[0]
    links = [line for line in text.splitlines() if line.strip().startswith('"logical_test/destination" ->')]
    assert len(links) == 2 and all("lhead=cluster_" in line and "dotted" in line for line in links)


def test_cloned_fanout_unused_and_quoting():
    app = small_app('''
main = "g"
[[nodes]]
name = "idle"
ty = "Transform"
[[graphs]]
name = "g"
connections = [{ cap = 8, ports = ["a:out", "b:inp", "c\\"q:inp"] }]
nodes = [{ name = "a", ty = "NoopProducer" },
         { name = "b", ty = "NoopConsumer", cloned = 3 },
         { name = "c\\"q", ty = "NoopConsumer" }]
[[graphs]]
name = "spare"
''')
    text = dump.to_dot(app)
    assert '"g/b" [label="b\\nNoopConsumer x3"]' in text
    assert '"g/a" [label="a\\nNoopProducer"]' in text  # no x1
    assert 'xlabel="cap 8"' in text  # three ends: a junction point
    assert text.count('"g#junction1" ->') == 2 and text.count('-> "g#junction1"') == 1
    assert '"g/c\\"q"' in text
    assert 'label="graph spare (unused)"' in text
    assert "(unused)" in text.split('"@/idle" [', 1)[1].split("\n", 1)[0]


def test_write_dot(tmp_path, logical_app):
    out = tmp_path / "g.dot"
    dump.write_graph(logical_app, out)
    assert out.read_text() == dump.to_dot(logical_app)


def test_unknown_suffix(tmp_path, logical_app):
    with pytest.raises(MegFlowError, match=r"\.dot"):
        dump.write_graph(logical_app, tmp_path / "g.jpg")


def test_missing_dot_binary_says_how_to_install(tmp_path, logical_app, monkeypatch):
    monkeypatch.setattr(dump.shutil, "which", lambda name: None)
    with pytest.raises(MegFlowError, match="apt-get install graphviz"):
        dump.write_graph(logical_app, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' not installed")
def test_svg_rendered(tmp_path, logical_app):
    out = tmp_path / "g.svg"
    dump.write_graph(logical_app, out)
    svg = out.read_text()
    assert "<svg" in svg and "RepeatProcess" in svg and "per address" in svg


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' not installed")
def test_quoted_names_render(tmp_path):
    app = small_app('main = "g"\n[[graphs]]\nname = "g"\nnodes = [{ name = "x\\"y\\\\z", ty = "NoopProducer" }]\n')
    dump.write_graph(app, tmp_path / "g.svg")
    assert "NoopProducer" in (tmp_path / "g.svg").read_text()


def test_cli_dump(tmp_path, capsys):
    out = tmp_path / "cli.dot"
    assert main(["dump", "-p", str(LOGICAL), "-o", str(out)]) == 0
    assert '"@/collector"' in out.read_text()
    assert f"wrote {out}" in capsys.readouterr().out
