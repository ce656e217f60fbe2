"""NodeInstance: the actor life cycle on a real in-process worker (tests/support/inproc.py).

``exec`` is called until every input ended; the end closes the outputs, gives back the credits of
what was left and is reported to the creator with the failure as data; an exception on a request
is charged to that request only; resources are built on first use; a shared node's failure on one
instance's envelope fails that instance only."""

from __future__ import annotations

import pytest

from megflow_mp import Envelope
from megflow_mp.errors import NodeFailure
from megflow_mp.plan import MAIN
from megflow_mp.registry import builtin_registry, register, res_register
from megflow_mp.runtime.channels import CLOSE, CREDIT
from tests.support.inproc import InProc

BUILT: list = []


@register(inputs=["inp"], outputs=["out"])
class NFail:
    """Forwards; raises on ``i == 2``."""

    def __init__(self, name, args):
        pass

    def exec(self):
        e = self.inp.recv()
        if e is None:
            return
        if e.msg["i"] == 2:
            raise ValueError("two")
        self.out.send(e)


@register(inputs=["inp"], outputs=["out"])
class NUseRes:
    def __init__(self, name, args):
        pass

    def exec(self):
        e = self.inp.recv()
        if e is not None:
            self.out.send(e.repack(self.counter.add(e.msg["i"])))


@res_register()
class NCounter:
    def __init__(self, name, args):
        BUILT.append(name)
        self.total = args.get("start", 0)

    def add(self, n):
        self.total += n
        return self.total


APP = '''main = "g"
{top}
[[graphs]]
name = "g"
nodes = [{{ name = "a", ty = "NoopProducer" }}, {{ name = "t", ty = "{ty}" {extra} }},
         {{ name = "k", ty = "NoopConsumer" }}]
connections = [{{ cap = 4, ports = ["a:out", "t:inp"] }}, {{ cap = 4, ports = ["t:out", "k:inp"] }}]
'''


@pytest.fixture
def make():
    made = []

    def build(ty="NFail", extra="", top=""):
        w = InProc(APP.format(ty=ty, extra=extra, top=top), "g/t", builtin_registry().add_modules([__name__]))
        assert w.install_static() == [None]
        made.append(w)
        return w, w.nodes(MAIN)["g/t"]

    yield build
    for w in made:
        w.close()
    BUILT.clear()


def env(i, origin=None) -> Envelope:
    return Envelope.pack({"i": i}, info={"partial_id": i, "origin": origin})


def ended(w) -> list:
    return [m for _, m in w.sent.controls() if m[0] == "ended"]


def test_exec_runs_until_the_input_ended_then_the_end_is_reported(make):
    w, node = make()
    chan = node.inboxes[0].chan
    w.feed(chan, env(0), env(1))
    w.close_chan(chan)
    node.start()
    w.run_until(lambda: node.ended)
    assert [e.msg["i"] for _, _, e in w.decoded()] == [0, 1]
    assert [p for p, _ in w.sent.of(CLOSE)] == [w.app.decl_procs["g/k"][0]]  # downstream sees the end
    assert ended(w) == [("ended", MAIN, "g/t", None)]
    assert node.obj is None  # the plugin object is released


def test_an_exception_ends_the_node_with_the_failure_as_data(make):
    w, node = make()
    chan = node.inboxes[0].chan
    w.feed(chan, env(0), env(2), env(3))
    node.start()
    w.run_until(lambda: node.ended)
    ((_, top, path, failure),) = ended(w)
    assert isinstance(failure, NodeFailure) and failure.exc_type == "ValueError" and "two" in failure.traceback
    assert [e.msg["i"] for _, _, e in w.decoded()] == [0]
    # what was still queued is credited back at once (the sender must not wait for a dead node)
    assert sum(r[2] for _, r in w.sent.of(CREDIT)) == 3


def test_an_exception_on_a_request_fails_that_request_only(make):
    w, node = make()
    chan = node.inboxes[0].chan
    origin = (w.supervisor + 5, 0)  # the process and key of an HTTP server
    w.feed(chan, env(1, origin), env(2, origin), env(3, origin))
    w.close_chan(chan)
    node.start()
    w.run_until(lambda: node.ended)
    failed = [m for p, m in w.sent.controls() if m[0] == "request_failed"]
    assert [(m[1], m[2]) for m in failed] == [(0, 2)] and failed[0][3].exc_type == "ValueError"
    assert [e.msg["i"] for _, _, e in w.decoded()] == [1, 3]
    assert ended(w) == [("ended", MAIN, "g/t", None)]


def test_a_resource_is_built_on_first_use_and_shared_by_the_process(make):
    top = '[[resources]]\nname = "counter"\nty = "NCounter"\nstart = 10\n'
    w, node = make("NUseRes", extra=', res = ["counter"]', top=top)
    assert BUILT == []  # nothing built before a node uses it
    chan = node.inboxes[0].chan
    w.feed(chan, env(1), env(2))
    w.close_chan(chan)
    node.start()
    w.run_until(lambda: node.ended)
    assert BUILT == ["counter"]
    assert [e.msg for _, _, e in w.decoded()] == [11, 13]


def test_cancel_stops_a_node_at_its_blocking_call(make):
    w, node = make()
    node.start()
    w.run_until(lambda: node.task is not None and not node.task.dead and node.inboxes[0].waiter is not None)
    node.cancel()
    w.run_until(lambda: node.ended)
    assert ended(w) == [("ended", MAIN, "g/t", None)]  # a drained node ends without a failure
