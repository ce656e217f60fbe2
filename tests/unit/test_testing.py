"""The in-process harness: one node, real hub, collected outputs."""

from __future__ import annotations

import threading

import pytest

from megflow_mp import Envelope, api, create_future, join, register, sleep, yield_now
from megflow_mp.errors import EnvelopeMoved
from megflow_mp.errors import PluginError
from megflow_mp.func_op import batch_def, map_def, reduce_def, source_def
from megflow_mp.registry import Registry
from megflow_mp.testing import FLUSH, find_node_type, run_node


def msgs(envelopes):
    return [e.msg for e in envelopes]


# --- node types used below ---------------------------------------------------------------------------


@register(inputs=["inp"], outputs=["out"])
class Scale:
    def __init__(self, name, args):
        self.name, self.k = name, args.get("k", 1)
        self.calls = 0

    def exec(self):
        self.calls += 1
        envelope = self.inp.recv()
        if envelope is not None:
            self.out.send(envelope.repack(envelope.msg * self.k))


@map_def()
def add_one(x):
    return x + 1


@map_def()
def add_k(x, context):
    return x + context.k


@source_def()
def count_three():
    return iter(["a", "b", "c"])


@reduce_def()
def total(values):
    return sum(values)


BATCHES = []


@batch_def()
def record_batch(values):
    BATCHES.append(list(values))


# --- map and source ------------------------------------------------------------------------------------


def test_map_class_with_bare_messages_and_envelopes():
    out = run_node(Scale, args={"k": 3}, inputs={"inp": [1, Envelope.pack(2, {"partial_id": 7})]})
    assert msgs(out["out"]) == [3, 6]
    assert out["out"][1].partial_id == 7


def test_exec_called_until_input_end_seen():
    seen = []

    @register(inputs=["inp"], outputs=["out"])
    class Counting(Scale):
        def exec(self):
            super().exec()
            seen.append(self.calls)

    run_node(Counting, inputs={"inp": [1, 2]})
    assert seen == [1, 2, 3]  # two messages, then the call that saw the end


def test_func_op_map_found_from_its_function():
    assert msgs(run_node(add_one, inputs={"inp": [1, 2]})["out"]) == [2, 3]
    assert msgs(run_node(add_k, args={"k": 10}, inputs={"inp": [1]})["out"]) == [11]


def test_source_runs_exec_once_and_numbers_messages():
    out = run_node(count_three)
    assert msgs(out["out"]) == ["a", "b", "c"]
    assert [e.partial_id for e in out["out"]] == [0, 1, 2]


def test_source_class_exec_called_exactly_once():
    calls = []

    @register(outputs=["out"])
    class Once:
        def __init__(self, name, args):
            pass

        def exec(self):
            calls.append(1)
            self.out.send(Envelope.pack(len(calls)))

    assert msgs(run_node(Once)["out"]) == [1]
    assert calls == [1]


def test_args_get_the_node_name_and_resources_are_attributes():
    got = {}

    @register(outputs=["out"])
    class Probe:
        def __init__(self, name, args):
            got["name"], got["args"] = name, dict(args)

        def exec(self):
            got["res"] = self.model

    model = object()
    run_node(Probe, args={"a": 1}, name="probe", resources={"model": model})
    assert got == {"name": "probe", "args": {"name": "probe", "a": 1}, "res": model}


# --- list and dict ports, batches ------------------------------------------------------------------------


def test_reduce_over_list_port_nested_form():
    out = run_node(total, inputs={"inp": [[1, 2], [10, 20], [100, 200]]})
    assert msgs(out["out"]) == [111, 222]


def test_reduce_over_list_port_tagged_form():
    out = run_node(total, inputs={"inp:0": [1], "inp:1": [5]})
    assert msgs(out["out"]) == [6]


def test_list_output_elements_by_tag():
    out = run_node("Bcast", inputs={"inp": ["x"]}, outputs={"out": 2})
    assert {k: msgs(v) for k, v in out.items()} == {"out:0": ["x"], "out:1": ["x"]}


def test_dict_output_by_key():
    inputs = [Envelope.pack(i, {"to_addr": a}) for i, a in enumerate(["a", "b", "a"])]
    out = run_node("Demux", inputs={"inp": inputs}, outputs={"out": ["a", "b"]})
    assert {k: msgs(v) for k, v in out.items()} == {"out:a": [0, 2], "out:b": [1]}


def test_batch_def_groups_by_batch_size():
    BATCHES.clear()
    out = run_node(record_batch, args={"batch_size": 2, "timeout": 10}, inputs={"inp": [1, 2, 3, 4, 5]})
    assert BATCHES == [[1, 2], [3, 4], [5]]
    assert msgs(out["out"]) == [1, 2, 3, 4, 5]


def test_flush_marker_gives_none_without_ending():
    log = []

    @register(inputs=["inp"])
    class Shared:
        def __init__(self, name, args):
            pass

        def exec(self):
            envelope = self.inp.recv()
            log.append(None if envelope is None else envelope.msg)
            if envelope is None:
                log.append(self.inp.is_closed())

    run_node(Shared, inputs={"inp": [1, FLUSH, 2]})
    assert log == [1, None, False, 2, None, True]


def test_unknown_input_port_names_the_ports():
    with pytest.raises(ValueError, match="no input 'in'.*inputs: inp"):
        run_node(Scale, inputs={"in": [1]})


# --- the hub: sleep, join, futures ------------------------------------------------------------------------


def test_sleep_join_yield_now_run_on_the_hub():
    order = []

    @register(inputs=["inp"], outputs=["out"])
    class Concurrent:
        def __init__(self, name, args):
            pass

        def exec(self):
            envelope = self.inp.recv()
            if envelope is None:
                return

            def slow():
                sleep(80)
                order.append("slow")
                return 1

            def fast():
                yield_now()
                order.append("fast")
                return 2

            self.out.send(envelope.repack(join([slow, fast])))

    out = run_node(Concurrent, inputs={"inp": ["go"]})
    assert msgs(out["out"]) == [[1, 2]]
    assert order == ["fast", "slow"]


def test_create_future_woken_from_a_thread():
    @register(outputs=["out"])
    class Waiter:
        def __init__(self, name, args):
            pass

        def exec(self):
            fut, waker = create_future(lambda r: r * 2)
            threading.Thread(target=waker.wake, args=(21,)).start()
            self.out.send(Envelope.pack(fut.wait()))

    assert msgs(run_node(Waiter)["out"]) == [42]


def test_hub_is_unset_after_the_run():
    run_node(add_one, inputs={"inp": [1]})
    assert api.current_hub() is None


def test_future_never_woken_times_out():
    @register(outputs=["out"])
    class Stuck:
        def __init__(self, name, args):
            pass

        def exec(self):
            create_future()[0].wait()

    with pytest.raises(TimeoutError, match="'stuck' did not finish"):
        run_node(Stuck, name="stuck", timeout=0.3)


def test_node_that_never_reads_its_input_times_out():
    @register(inputs=["inp"])
    class Deaf:
        def __init__(self, name, args):
            pass

        def exec(self):
            yield_now()

    with pytest.raises(TimeoutError, match="inputs inp"):
        run_node(Deaf, inputs={"inp": [1]}, timeout=0.3)


# --- errors -----------------------------------------------------------------------------------------------


def test_exception_in_exec_propagates():
    @register(inputs=["inp"])
    class Boom:
        def __init__(self, name, args):
            pass

        def exec(self):
            if self.inp.recv() is not None:
                raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_node(Boom, inputs={"inp": [1]})


def test_exception_in_constructor_propagates():
    @register(outputs=["out"])
    class BadInit:
        def __init__(self, name, args):
            raise KeyError(args["missing"])

        def exec(self):
            pass

    with pytest.raises(KeyError, match="missing"):
        run_node(BadInit)


def test_envelope_used_after_send_raises():
    @register(inputs=["inp"], outputs=["out"])
    class Reuse:
        def __init__(self, name, args):
            pass

        def exec(self):
            envelope = self.inp.recv()
            if envelope is not None:
                self.out.send(envelope)
                envelope.msg = 2

    with pytest.raises(EnvelopeMoved):
        run_node(Reuse, inputs={"inp": [1]})


def test_send_requires_an_envelope():
    @register(outputs=["out"])
    class Raw:
        def __init__(self, name, args):
            pass

        def exec(self):
            self.out.send(1)

    with pytest.raises(TypeError, match="Envelope.pack"):
        run_node(Raw)


def test_inputs_are_copies():
    data = {"v": 1}
    given = Envelope.pack(data)

    @register(inputs=["inp"], outputs=["out"])
    class Mutate:
        def __init__(self, name, args):
            pass

        def exec(self):
            envelope = self.inp.recv()
            if envelope is not None:
                envelope.msg["v"] = 2
                self.out.send(envelope)

    out = run_node(Mutate, inputs={"inp": [given]})
    assert out["out"][0].msg == {"v": 2}
    assert data == {"v": 1} and given.msg is data  # the caller's envelope is neither moved nor changed


def test_unpicklable_message_fails_in_send():
    @register(outputs=["out"])
    class Lambda:
        def __init__(self, name, args):
            pass

        def exec(self):
            self.out.send(Envelope.pack(threading.Lock()))

    with pytest.raises(TypeError, match="pickle"):
        run_node(Lambda)


# --- finding the type ---------------------------------------------------------------------------------------


def test_unregistered_class_is_a_plugin_error():
    class Plain:
        pass

    with pytest.raises(PluginError, match="not a registered node type"):
        run_node(Plain)


def test_type_from_a_registry_and_by_name():
    reg = Registry().add_modules([__name__])
    assert find_node_type(Scale, reg).name == "Scale"
    assert find_node_type("AddOne", reg).name == "AddOne"
    with pytest.raises(PluginError, match="not registered"):
        find_node_type("NoSuchType")


def test_list_port_needs_a_list_of_lists():
    with pytest.raises(ValueError, match="'inp' of 'Total' is a list port"):
        run_node(total, inputs={"inp": {"a": [1]}})
