"""Ports: what a plugin's ``self.<port>`` does on a real in-process worker (tests/support/inproc.py).

Inputs: ``recv`` gives envelopes in order and None at the end or at a shared node's flush marker;
``batch_recv`` collects up to n. Outputs: ``send`` encodes once for every destination, moves the
envelope, and raises after ``close()``; a shared node's routed output drops what no instance
awaits."""

from __future__ import annotations

import logging

import pytest

from megflow_mp import Envelope
from megflow_mp.envelope import EnvelopeMoved
from megflow_mp.errors import ChannelClosed
from megflow_mp.plan import MAIN
from megflow_mp.registry import builtin_registry
from megflow_mp.runtime.channels import CLOSE, DATA
from tests.support.inproc import InProc

CHAIN = '''main = "g"
[[graphs]]
name = "g"
nodes = [{ name = "a", ty = "NoopProducer" }, { name = "t", ty = "Transform" },
         { name = "k", ty = "NoopConsumer" }, { name = "j", ty = "NoopConsumer" }]
connections = [{ cap = 4, ports = ["a:out", "t:inp"] }, { cap = 4, ports = ["t:out", "k:inp", "j:inp"] }]
'''

SHARED = '''main = "g"
[[nodes]]
name = "hub"
ty = "Transform"
[[graphs]]
name = "g"
nodes = [{ name = "a", ty = "NoopProducer" }, { name = "k", ty = "NoopConsumer" }]
connections = [{ cap = 4, ports = ["a:out", "hub:inp"] }, { cap = 4, ports = ["hub:out", "k:inp"] }]
'''


@pytest.fixture
def chain():
    w = InProc(CHAIN, "g/t", builtin_registry())
    assert w.install_static() == [None]
    yield w, w.nodes(MAIN)["g/t"]
    w.close()


def env(i) -> Envelope:
    return Envelope.pack({"i": i}, info={"partial_id": i})


def test_recv_gives_envelopes_in_order_then_none_at_the_end(chain):
    w, node = chain
    port = node.obj.inp
    w.feed(port.inbox.chan, env(0), env(1))
    w.close_chan(port.inbox.chan)
    got = []
    w.run(lambda: got.extend([port.recv(), port.recv(), port.recv()]))
    assert [e.msg["i"] for e in got[:2]] == [0, 1] and got[2] is None
    assert port.is_closed()


def test_batch_recv_takes_what_is_queued_up_to_n(chain):
    w, node = chain
    port = node.obj.inp
    w.feed(port.inbox.chan, *[env(i) for i in range(5)])
    got = []
    w.run(lambda: got.append(port.batch_recv(3, 0)))
    batch, closed = got[0]
    assert [e.partial_id for e in batch] == [0, 1, 2] and not closed


def test_batch_recv_waits_at_most_the_timeout_after_the_first(chain):
    w, node = chain
    port = node.obj.inp
    w.feed(port.inbox.chan, env(0))
    got = []
    w.run(lambda: got.append(port.batch_recv(3, 1)))  # nothing more comes: the timer ends the batch
    assert [e.partial_id for e in got[0][0]] == [0]


def test_send_encodes_once_for_every_destination_and_moves_the_envelope(chain):
    w, node = chain
    e = env(7)
    w.run(lambda: node.obj.out.send(e))
    sent = w.decoded()
    assert sorted(p for p, _, _ in sent) == sorted([w.app.decl_procs["g/k"][0], w.app.decl_procs["g/j"][0]])
    assert all(x.msg == {"i": 7} and x.partial_id == 7 for _, _, x in sent)
    with pytest.raises(EnvelopeMoved):
        e.msg


def test_send_takes_only_envelopes(chain):
    w, node = chain
    errors = []

    def body():
        with pytest.raises(TypeError, match="Envelope.pack"):
            node.obj.out.send({"i": 1})
        errors.append("raised")

    w.run(body)
    assert errors == ["raised"] and w.sent.of(DATA) == []


def test_a_send_after_close_raises_channel_closed(chain):
    w, node = chain
    raised = []

    def body():
        node.obj.out.close()
        with pytest.raises(ChannelClosed, match="'out'"):
            node.obj.out.send(env(1))
        raised.append(True)

    w.run(body)
    assert raised == [True]
    assert len(w.sent.of(CLOSE)) == 2 and w.sent.of(DATA) == []  # each receiver saw the end once
    node.obj.out.close()
    assert len(w.sent.of(CLOSE)) == 2  # closing again sends nothing


@pytest.fixture
def shared():
    w = InProc(SHARED, "@/hub", builtin_registry())
    assert w.install_static() == [None, None]  # the shared node, then the main graph's route on it
    yield w, w.nodes(0)["hub"]
    w.close()


def test_a_shared_node_routes_results_back_to_the_instance_of_the_input(shared):
    w, node = shared
    chan = w.app.shared_chans[("hub", "inp", None)]
    e = env(1)
    e.transfer_addr = MAIN
    w.feed(chan, e)
    w.run(lambda: node.obj.out.send(node.obj.inp.recv()))
    ((proc, _, out),) = w.decoded()
    assert proc == w.app.decl_procs["g/k"][0] and out.transfer_addr == MAIN


def test_a_shared_node_drops_an_envelope_of_no_instance_with_one_error(shared, caplog):
    w, node = shared

    def body():
        for i in range(2):
            e = env(i)
            e.transfer_addr = 12345
            node.obj.out.send(e)

    with caplog.at_level(logging.ERROR, logger="megflow_mp"):
        w.run(body)
    assert w.sent.of(DATA) == []
    assert len([r for r in caplog.records if "no subgraph instance 12345" in r.getMessage()]) == 1


def test_a_route_end_is_none_once_and_closes_that_route_outputs(shared):
    w, node = shared
    chan = w.app.shared_chans[("hub", "inp", None)]
    port = node.obj.inp
    w.close_chan(chan, route=MAIN)  # the main graph's only sender of hub:inp ended
    got = []
    w.run(lambda: got.append(port.recv()))
    assert got == [None] and not port.inbox.closed  # the channel stays open for other instances
    assert node.pending_closes == [MAIN]
    w.run(node.flush_barriers)
    assert [p for p, r in w.sent.of(CLOSE) if r[2] is None] == [w.app.decl_procs["g/k"][0]]
