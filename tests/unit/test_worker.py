"""Worker: installing node instances (failures as data), reporting ends to the creator, destroying
an instance, dead and restarted peers, and the worker that tasks and ``exclusive`` threads see.

Each test runs a real Worker in-process (tests/support/inproc.py): what it sends is recorded."""

from __future__ import annotations

import threading

import pytest

from megflow_mp import api
from megflow_mp.errors import FrontDoorError, PeerDied
from megflow_mp.plan import MAIN, Dest
from megflow_mp.registry import builtin_registry, register
from megflow_mp.runtime import worker as worker_mod
from tests.support.inproc import InProc

SEEN: list = []


@register(outputs=["out"])
class WSource:
    def __init__(self, name, args):
        pass

    def exec(self):
        SEEN.append(("task", worker_mod.current_worker(), api.current_hub()))


@register(outputs=["out"], exclusive=True)
class WThreaded:
    def __init__(self, name, args):
        pass

    def exec(self):
        SEEN.append(("thread", worker_mod.current_worker(), threading.current_thread().name))


@register(outputs=["out"])
class WDoorSource:  # answers clients: its app has a front door
    interactive = True

    def __init__(self, name, args):
        pass

    def exec(self):
        pass


@register(outputs=["out"])
class WBroken:
    def __init__(self, name, args):
        if args.get("expected"):
            raise FrontDoorError("cannot listen on 127.0.0.1:1: taken")
        raise ValueError("bad args")

    def exec(self):
        pass


APP = '''main = "g"
[[graphs]]
name = "g"
nodes = [{{ name = "a", ty = "{ty}" {extra} }}, {{ name = "k", ty = "NoopConsumer" }}]
connections = [{{ cap = 4, ports = ["a:out", "k:inp"] }}]
'''


def registry():
    return builtin_registry().add_modules([__name__])


@pytest.fixture
def make():
    made = []

    def build(ty="WSource", extra="", decl="g/a"):
        w = InProc(APP.format(ty=ty, extra=extra), decl, registry())
        made.append(w)
        return w

    yield build
    for w in made:
        w.close()
    SEEN.clear()


def test_installed_nodes_run_as_tasks_that_find_their_worker(make):
    w = make()
    assert w.install_static() == [None]
    w.start(MAIN)
    w.run_until(lambda: SEEN)
    assert SEEN == [("task", w.worker, w.worker.hub)]


def test_an_exclusive_node_runs_on_its_own_thread_and_finds_its_worker(make):
    w = make("WThreaded")
    assert w.install_static() == [None]
    w.start(MAIN)
    w.run_until(lambda: SEEN)
    assert SEEN == [("thread", w.worker, "mf:g/a")]


def test_the_end_of_each_node_is_reported_to_its_creator(make):
    w = make()
    w.install_static()
    w.start(MAIN)
    w.run_until(lambda: w.sent.controls())
    assert w.sent.controls() == [(w.supervisor, ("ended", MAIN, "g/a", None))]
    (proc, record), = w.sent.of(1)  # CLOSE: its output ended
    assert proc == w.app.decl_procs["g/k"][0]


def test_a_constructor_raising_is_reported_as_its_traceback(make):
    w = make("WBroken")
    (error,) = w.install_static()
    assert "ValueError: bad args" in error and "Traceback" in error
    assert w.worker.nodes == {}


def test_an_engine_error_while_building_is_one_line(make):
    w = make("WBroken", extra=", expected = true")
    assert w.install_static() == ["cannot listen on 127.0.0.1:1: taken"]


def test_destroy_forgets_the_instance_channels(make):
    w = make(decl="g/k")
    w.install_static()
    (node,) = w.worker.nodes[MAIN]
    chan = node.inboxes[0].chan
    assert w.worker.channels.inboxes[chan] is node.inboxes[0]
    w.worker.on_destroy(w.supervisor, MAIN)
    assert chan not in w.worker.channels.inboxes and MAIN not in w.worker.nodes


def test_a_lost_peer_without_restart_fails_its_senders(make):
    w = make()
    k = w.app.decl_procs["g/k"][0]
    w.worker.peer_lost(k)
    with pytest.raises(PeerDied):
        w.worker.channels.credits.acquire(Dest(99, (k,), False, 4))


def test_a_lost_peer_that_restarts_is_waited_for(make):
    w = make(extra=", restart = 1", decl="g/k")
    a = w.app.decl_procs["g/a"][0]
    w.worker.peer_lost(a)
    assert a not in w.worker.channels.credits.dead
    w.worker.on_peer_died(w.supervisor, a)  # its restarts are used up: the supervisor says so
    assert a in w.worker.channels.credits.dead
    w.worker.on_peer_restarted(w.supervisor, a)
    assert a not in w.worker.channels.credits.dead


def test_a_lost_peer_of_an_app_with_a_front_door_is_waited_for_by_default(make):
    """No ``restart``, but the app has a front door: the default policy may start the peer again,
    so its senders wait for the supervisor's word instead of raising PeerDied at once."""
    w = make(ty="WDoorSource", decl="g/k")
    a = w.app.decl_procs["g/a"][0]
    assert w.app.front_door and w.app.decls["g/a"].restart is None
    w.worker.peer_lost(a)
    assert a not in w.worker.channels.credits.dead
    w.worker.on_peer_died(w.supervisor, a)  # not restarted after all: the supervisor says so
    assert a in w.worker.channels.credits.dead


def test_restart_zero_opts_out_in_an_app_with_a_front_door(make):
    w = make(ty="WDoorSource", extra=", restart = 0", decl="g/k")
    a = w.app.decl_procs["g/a"][0]
    w.worker.peer_lost(a)
    with pytest.raises(PeerDied):
        w.worker.channels.credits.acquire(Dest(99, (a,), False, 4))


def test_outside_any_worker_there_is_none():
    assert worker_mod.current_worker() is None


def _policy_after(factory) -> int:
    """The scheduling policy of a thread that ran ``_set_policy(factory)`` (per thread on Linux)."""
    seen = []

    def run():
        worker_mod._set_policy(factory)
        seen.append(worker_mod.os.sched_getscheduler(0))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return seen[0]


def test_a_pipeline_worker_runs_as_batch_and_a_front_door_keeps_the_normal_policy():
    from megflow_mp.nodes.http_node import HttpServerNode
    from megflow_mp.nodes.video_server import VideoServer

    assert _policy_after(WSource) == worker_mod.os.SCHED_BATCH
    assert _policy_after(HttpServerNode) == worker_mod.os.SCHED_OTHER
    assert _policy_after(VideoServer) == worker_mod.os.SCHED_OTHER
    assert worker_mod.os.sched_getscheduler(0) == worker_mod.os.SCHED_OTHER  # this thread: untouched
