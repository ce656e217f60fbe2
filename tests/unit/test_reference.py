"""The built-in node reference (``megflow-mp nodes``, docs/nodes.md) is made from the code."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from megflow_mp.cli import main
from megflow_mp.reference import node_reference
from megflow_mp.registry import builtin_registry

DOCS = Path(__file__).resolve().parents[2] / "docs" / "nodes.md"


def test_docs_nodes_md_is_the_current_output():
    assert DOCS.read_text() == node_reference(), "regenerate it: megflow-mp nodes > docs/nodes.md"


def test_every_builtin_type_has_its_ports_and_its_modules_text():
    text = node_reference()
    for t in builtin_registry().nodes.values():
        section = text.split(f"\n## {t.name}\n", 1)[1].split("\n## ", 1)[0]
        assert all(f"`{p.name}" in section for p in t.inputs + t.outputs), t.name
        doc = inspect.cleandoc(sys.modules[t.module].__doc__)
        assert doc in section or f"both are defined in `{t.module}`" in section


def test_the_nodes_command_prints_it(capsys):
    assert main(["nodes"]) == 0
    assert capsys.readouterr().out == node_reference()
