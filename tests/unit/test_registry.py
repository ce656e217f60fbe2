"""Port specs, the decorators, the per-module catalog and Registry objects."""

from __future__ import annotations

import itertools
import sys
import types

import pytest

from megflow_mp import registry as regmod
from megflow_mp.errors import PluginError
from megflow_mp.registry import (DICT, LIST, SINGLE, NodeType, PortSpec, Registry, ResourceType, builtin_registry,
                                 register, res_register)

_ids = itertools.count()


@pytest.fixture
def module():
    """A fresh module (in sys.modules, as an imported plugin is); removed afterwards."""
    names = []

    def make():
        names.append(f"fake_plugins_{next(_ids)}")
        sys.modules[names[-1]] = types.ModuleType(names[-1])
        return names[-1]

    yield make
    for name in names:
        del sys.modules[name]


def node_class(mod: str, name: str = "Thing"):
    def __init__(self, node_name, args):
        self.args = args

    return type(name, (), {"__module__": mod, "__init__": __init__, "exec": lambda self: None})


# --- port specs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, kind", [("inp", SINGLE), ("inp:[]", LIST), ("out:{}", DICT), ("_p2", SINGLE)])
def test_port_spec_parse(text, kind):
    spec = PortSpec.parse(text)
    assert (spec.name, spec.kind) == (text.split(":")[0], kind)


@pytest.mark.parametrize("text", ["", "1p", "p:x", "p:[", "p:[]:x", "a b", "p:{ }"])
def test_port_spec_rejects(text):
    with pytest.raises(ValueError, match="bad port declaration"):
        PortSpec.parse(text)


# --- decorators and the catalog ---------------------------------------------------------------------------


def test_register_records_the_type_in_its_module(module):
    mod = module()
    cls = node_class(mod)
    assert register(inputs=["inp", "side:[]"], outputs="out:{}", exclusive=True)(cls) is cls
    (t,) = regmod.module_types(mod)
    assert isinstance(t, NodeType)
    assert (t.name, t.factory, t.exclusive, t.module) == ("Thing", cls, True, mod)
    assert t.inputs == (PortSpec("inp"), PortSpec("side", LIST))
    assert t.outputs == (PortSpec("out", DICT),)
    assert t.input("side").kind == LIST and t.output("inp") is None and t.input("out") is None
    assert t.port_names() == "inputs: inp, side; outputs: out"
    assert not t.builtin


def test_register_with_explicit_name(module):
    mod = module()
    register(name="Renamed", outputs=["out"])(node_class(mod))
    assert [t.name for t in regmod.module_types(mod)] == ["Renamed"]
    assert NodeType("X", object).port_names() == "inputs: none; outputs: none"


def test_register_bad_port_names_the_type(module):
    with pytest.raises(PluginError, match=r"@register of 'Thing'.*bad port declaration 'in put'"):
        register(inputs=["in put"])(node_class(module()))


def test_register_port_both_input_and_output(module):
    with pytest.raises(PluginError, match="port 'p' is both input and output"):
        register(inputs=["p"], outputs=["p:[]"])(node_class(module()))


def test_res_register(module):
    mod = module()
    cls = node_class(mod, "Model")
    assert res_register()(cls) is cls
    res_register(name="Other")(node_class(mod, "Model2"))
    entries = regmod.module_types(mod)
    assert all(isinstance(e, ResourceType) for e in entries)
    assert [(e.name, e.module) for e in entries] == [("Model", mod), ("Other", mod)]


def test_registering_again_in_a_module_replaces(module):
    mod = module()
    register(outputs=["out"])(node_class(mod))
    second = register(inputs=["inp"])(node_class(mod))
    (t,) = regmod.module_types(mod)
    assert t.factory is second and t.inputs == (PortSpec("inp"),)


def test_same_name_node_and_resource_coexist_in_a_module(module):
    mod = module()
    register()(node_class(mod, "Both"))
    res_register()(node_class(mod, "Both"))
    assert sorted(type(e).__name__ for e in regmod.module_types(mod)) == ["NodeType", "ResourceType"]


def test_catalog_is_per_module(module):
    a, b = module(), module()
    cls_a = register()(node_class(a))
    cls_b = register()(node_class(b))
    assert regmod.module_types(a)[0].factory is cls_a
    assert regmod.module_types(b)[0].factory is cls_b


# --- Registry objects -------------------------------------------------------------------------------------


def test_registry_from_chosen_modules(module):
    a, b, c = module(), module(), module()
    register(name="A")(node_class(a))
    res_register(name="R")(node_class(a, "R"))
    register(name="B")(node_class(b))
    register(name="C")(node_class(c))
    reg = Registry().add_modules([b, a, "no.such.module"])
    assert reg.known_nodes() == ["A", "B"]
    assert list(reg.resources) == ["R"]
    assert Registry().nodes == {}  # each registry is a new object


def test_duplicate_type_across_modules_is_an_error(module):
    a, b = module(), module()
    register(name="Dup")(node_class(a))
    register(name="Dup")(node_class(b))
    reg = Registry().add_modules([a])
    with pytest.raises(PluginError, match="node type 'Dup' is registered twice"):
        reg.add_modules([b])


def test_adding_the_same_module_twice_is_fine(module):
    a = module()
    register(name="Once")(node_class(a))
    reg = Registry().add_modules([a, a])
    assert reg.known_nodes() == ["Once"]


def test_plugin_may_replace_a_builtin(module):
    a = module()
    cls = register(name="Transform", inputs=["inp"], outputs=["out"])(node_class(a))
    reg = builtin_registry().add_modules([a])
    assert reg.nodes["Transform"].factory is cls


def test_builtin_registry():
    reg = builtin_registry()
    assert {"Transform", "Bcast", "Demux", "DynDemux", "Reorder", "NoopProducer", "NoopConsumer"} <= set(reg.nodes)
    assert all(t.builtin for t in reg.nodes.values())
    assert reg.nodes["DynDemux"].dynamic_outputs == frozenset({"out"})
    assert reg.nodes["Transform"].dynamic_outputs == frozenset()
    assert reg.nodes["Bcast"].output("out").kind == LIST
    assert builtin_registry() is not reg
