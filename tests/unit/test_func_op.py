"""func_op: node types from plain functions (names, ports, Context, behaviour)."""

from __future__ import annotations

import pytest

from megflow_mp.envelope import Envelope
from megflow_mp.func_op import Context, batch_def, camel_case, map_def, reduce_def, sink_def, source_def
from megflow_mp.registry import DICT, LIST, SINGLE, Registry
from megflow_mp.testing import run_node


def types():
    return Registry().add_modules([__name__]).nodes


@pytest.mark.parametrize("name, expected", [
    ("summation", "Summation"),
    ("add_one", "AddOne"),
    ("_private_thing", "PrivateThing"),
    ("double__underscore_", "DoubleUnderscore"),
    ("keep_camelCase", "KeepCamelCase"),
    ("Already", "Already"),
    ("x2_y", "X2Y"),
])
def test_camel_case(name, expected):
    assert camel_case(name) == expected


def test_context_holds_args_as_attributes():
    ctx = Context(a=1, name="n")
    assert (ctx.a, ctx.name) == (1, "n")
    ctx.state = [1]
    assert vars(ctx) == {"a": 1, "name": "n", "state": [1]}


# --- definitions --------------------------------------------------------------------------------------------


@map_def()
def fo_double(x):
    return 2 * x


@map_def(name="fo_renamed", exclusive=True)
def fo_original(x):
    return x


@reduce_def()
def fo_join(values, context):
    return context.sep.join(values)


SUNK = []


@sink_def()
def fo_sink(x):
    SUNK.append(x)


@source_def()
def fo_source(context):
    return range(context.n)


@batch_def()
def fo_batch(values):
    for i, v in enumerate(values):
        v["batch_pos"] = i


def test_decorators_return_the_function():
    assert fo_double(4) == 8
    assert fo_original.__name__ == "fo_original"


@pytest.mark.parametrize("name, inputs, outputs", [
    ("FoDouble", [("inp", SINGLE)], [("out", SINGLE)]),
    ("FoJoin", [("inp", LIST)], [("out", SINGLE)]),
    ("FoSink", [("inp", SINGLE)], []),
    ("FoSource", [], [("out", SINGLE)]),
    ("FoBatch", [("inp", SINGLE)], [("out", SINGLE)]),
])
def test_ports_of_each_kind(name, inputs, outputs):
    t = types()[name]
    assert [(p.name, p.kind) for p in t.inputs] == inputs
    assert [(p.name, p.kind) for p in t.outputs] == outputs
    assert t.module == __name__ and t.factory.__name__ == name
    assert DICT not in {p.kind for p in t.inputs + t.outputs}


def test_name_and_exclusive_options():
    t = types()["FoRenamed"]
    assert t.exclusive and not types()["FoDouble"].exclusive
    assert "FoOriginal" not in types()


# --- behaviour ------------------------------------------------------------------------------------------------


def test_map_replaces_msg_and_keeps_info():
    out = run_node(fo_double, inputs={"inp": [Envelope.pack(3, {"partial_id": 4, "to_addr": 1})]})
    assert [(e.msg, e.partial_id, e.to_addr) for e in out["out"]] == [(6, 4, 1)]


def test_reduce_with_context():
    out = run_node(fo_join, args={"sep": "-"}, inputs={"inp": [["a", "c"], ["b", "d"]]})
    assert [e.msg for e in out["out"]] == ["a-b", "c-d"]


def test_reduce_inputs_of_different_lengths_fail():
    with pytest.raises(RuntimeError, match="one input ended before the others"):
        run_node(fo_join, args={"sep": ""}, inputs={"inp": [["a", "b"], ["c"]]})


def test_sink_calls_the_function():
    SUNK.clear()
    assert run_node(fo_sink, inputs={"inp": [1, 2]}) == {}
    assert SUNK == [1, 2]


def test_source_numbers_partial_ids():
    out = run_node(fo_source, args={"n": 3})
    assert [(e.msg, e.partial_id) for e in out["out"]] == [(0, 0), (1, 1), (2, 2)]


def test_batch_passes_messages_then_forwards_envelopes():
    out = run_node(fo_batch, args={"batch_size": 3, "timeout": 5}, inputs={"inp": [{}, {}, {}, {}]})
    assert [e.msg["batch_pos"] for e in out["out"]] == [0, 1, 2, 0]
