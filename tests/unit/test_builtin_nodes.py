"""The built-in node types (Transform, Bcast, Demux, Reorder, NoopProducer, NoopConsumer) run
in-process through ``megflow_mp.testing.run_node``. DynDemux needs the engine: see tests/integration."""

from __future__ import annotations

import logging

from megflow_mp import Envelope
from megflow_mp.registry import builtin_registry
from megflow_mp.testing import FLUSH, run_node


def msgs(envelopes):
    return [e.msg for e in envelopes]


def env(msg, **info) -> Envelope:
    return Envelope.pack(msg, info)


def test_builtins_are_registered_under_megflow_names():
    names = set(builtin_registry().nodes)
    assert {"Transform", "Bcast", "Demux", "DynDemux", "Reorder", "NoopProducer", "NoopConsumer"} <= names


# --- Transform ---------------------------------------------------------------------------------------------


def test_transform_forwards_every_envelope_with_its_info():
    given = [env({"k": 1}, partial_id=0, from_addr="f", to_addr=3, tag="t", extra_data={"x": [1]}), env("b")]
    out = run_node("Transform", inputs={"inp": given})
    assert msgs(out["out"]) == [{"k": 1}, "b"]
    assert out["out"][0].info() == given[0].info()
    assert out["out"][1].info() == given[1].info()


def test_transform_on_an_empty_stream_sends_nothing():
    assert run_node("Transform", inputs={"inp": []}) == {"out": []}


def test_transform_passes_a_flush_marker_as_a_pause_only():
    out = run_node("Transform", inputs={"inp": [1, FLUSH, 2]})
    assert msgs(out["out"]) == [1, 2]


# --- Bcast -----------------------------------------------------------------------------------------------------


def test_bcast_sends_each_envelope_to_every_output():
    given = [env("a", partial_id=0, to_addr=5), env("b", partial_id=1, to_addr=6)]
    out = run_node("Bcast", inputs={"inp": given}, outputs={"out": 3})
    assert sorted(out) == ["out:0", "out:1", "out:2"]
    for port in out.values():
        assert msgs(port) == ["a", "b"]
        assert [(e.partial_id, e.to_addr) for e in port] == [(0, 5), (1, 6)]


def test_bcast_copies_are_independent():
    out = run_node("Bcast", inputs={"inp": [[1, 2]]}, outputs={"out": 2})
    first, second = out["out:0"][0], out["out:1"][0]
    first.msg.append(3)
    assert second.msg == [1, 2]


def test_bcast_without_outputs_drops_everything():
    assert run_node("Bcast", inputs={"inp": ["a", "b"]}) == {}


# --- Demux -------------------------------------------------------------------------------------------------


def test_demux_routes_by_to_addr():
    given = [env(i, to_addr=a) for i, a in enumerate([0, 1, 0, 2])]
    out = run_node("Demux", inputs={"inp": given}, outputs={"out": ["0", "1", "2"]})
    assert {k: msgs(v) for k, v in out.items()} == {"out:0": [0, 2], "out:1": [1], "out:2": [3]}


def test_demux_matches_the_string_of_to_addr():
    given = [env("int", to_addr=7), env("str", to_addr="7")]
    out = run_node("Demux", inputs={"inp": given}, outputs={"out": ["7"]})
    assert msgs(out["out:7"]) == ["int", "str"]


def test_demux_drops_an_unknown_address_with_one_warning(caplog):
    given = [env("lost", to_addr=9), env("kept", to_addr="a"), env("lost again", to_addr=9), env("none")]
    with caplog.at_level(logging.WARNING, logger="megflow_mp"):
        out = run_node("Demux", name="dm", inputs={"inp": given}, outputs={"out": ["a", "b"]})
    assert {k: msgs(v) for k, v in out.items()} == {"out:a": ["kept"], "out:b": []}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Demux 'dm': no output for to_addr 9 (outputs: a, b); dropped",
                        "Demux 'dm': no output for to_addr None (outputs: a, b); dropped"]


# --- Reorder -------------------------------------------------------------------------------------------------


def pids(envelopes):
    return [e.partial_id for e in envelopes]


def test_reorder_puts_envelopes_in_partial_id_order():
    order = [3, 0, 2, 1, 5, 4]
    out = run_node("Reorder", inputs={"inp": [env(f"m{i}", partial_id=i) for i in order]})
    assert pids(out["out"]) == [0, 1, 2, 3, 4, 5]
    assert msgs(out["out"]) == [f"m{i}" for i in range(6)]


def test_reorder_keeps_an_ordered_stream():
    out = run_node("Reorder", inputs={"inp": [env(i, partial_id=i) for i in range(5)]})
    assert pids(out["out"]) == [0, 1, 2, 3, 4]


def test_reorder_flushes_what_is_left_in_order_at_the_end():
    out = run_node("Reorder", inputs={"inp": [env(i, partial_id=i) for i in [7, 1, 4, 0]]})
    assert pids(out["out"]) == [0, 1, 4, 7]  # 0 and 1 at once; 4 and 7 only when the stream ended


def test_reorder_starts_at_the_start_argument():
    out = run_node("Reorder", args={"start": 10}, inputs={"inp": [env(i, partial_id=i) for i in [11, 10, 12]]})
    assert pids(out["out"]) == [10, 11, 12]


def test_reorder_keeps_the_envelope_info():
    given = [env("b", partial_id=1, to_addr="x", tag="t"), env("a", partial_id=0, extra_data=5)]
    out = run_node("Reorder", inputs={"inp": given})
    assert [(e.msg, e.to_addr, e.tag, e.extra_data) for e in out["out"]] == [("a", None, None, 5),
                                                                          ("b", "x", "t", None)]


# --- Noop -------------------------------------------------------------------------------------------------


def test_noop_producer_sends_nothing_and_ends():
    assert run_node("NoopProducer") == {"out": []}


def test_noop_consumer_reads_everything_and_sends_nothing():
    out = run_node("NoopConsumer", inputs={"inp": [1, 2, 3]}, timeout=5)
    assert out == {}  # and no TimeoutError: run_node returns only once the end of the input was read
