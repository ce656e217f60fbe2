"""The supervisor's pieces that need no running app: ``static_items`` (what each worker installs
before start, and how many node ends to wait for) and ``kill_descendants`` (no process outlives it).
Whole runs are tested in tests/integration."""

from __future__ import annotations

import ctypes
import os
import signal
import time

import pytest

from megflow_mp.config import load_config_string
from megflow_mp.graph import build_app
from megflow_mp.plan import STATIC_ID_BASE, InSpec, NodeSpec, RouteSpec
from megflow_mp.registry import builtin_registry, register
from megflow_mp.supervisor import MAIN, kill_descendants, static_items


@register(outputs=["out"])
class SupSource:
    def __init__(self, name, args):
        pass

    def exec(self):
        pass


def app_of(text: str):
    return build_app(load_config_string(text), builtin_registry().add_modules([__name__]))


# --- static_items -------------------------------------------------------------------------------------------


SHARED_APP = '''main = "g"
[[nodes]]
name = "hub"
ty = "Transform"
cloned = 2
[[graphs]]
name = "g"
nodes = [{ name = "a", ty = "SupSource", cloned = 3 }, { name = "t", ty = "Transform" },
         { name = "k", ty = "NoopConsumer", cloned = 2 }]
connections = [{ cap = 3, ports = ["a:out", "hub:inp"] }, { cap = 5, ports = ["hub:out", "t:inp"] },
               { cap = 4, ports = ["t:out", "k:inp"] }]
'''


def paths(items) -> list:
    return [i.path if isinstance(i, NodeSpec) else ("route", i.shared) for i in items]


def test_main_is_just_below_the_static_ids():
    assert MAIN == STATIC_ID_BASE - 1


def test_items_per_worker_and_counts():
    app = app_of(SHARED_APP)
    items, static_count, shared_count = static_items(app)
    sup = app.nworkers  # the supervisor's process index follows the workers'
    assert sorted(items) == list(range(app.nworkers)) == list(range(8))
    shape = {p: [(top, creator, paths(its)) for top, creator, its in items[p]] for p in items}
    for p in app.decl_procs["g/a"]:
        assert shape[p] == [(MAIN, sup, ["g/a"])]
    for p in app.decl_procs["g/t"]:
        assert shape[p] == [(MAIN, sup, ["g/t"])]
    for p in app.decl_procs["g/k"]:
        assert shape[p] == [(MAIN, sup, ["g/k"])]
    for p in app.decl_procs["@/hub"]:  # the shared node first (instance 0), then the main graph's route
        assert shape[p] == [(0, sup, ["hub"]), (MAIN, sup, [("route", "hub")])]
    assert static_count == 3 + 1 + 2  # replicas of the main graph's own nodes
    assert shared_count == 2  # replicas of the shared node


def test_shared_node_spec_is_instance_zero_with_route_counted_inputs():
    app = app_of(SHARED_APP)
    items, _, _ = static_items(app)
    p = app.decl_procs["@/hub"][0]
    (spec,), (route,) = items[p][0][2], items[p][1][2]
    chan = app.shared_chans[("hub", "inp", None)]
    assert (spec.inst, spec.top, spec.decl) == (0, 0, "@/hub")
    assert spec.inputs == {"inp": InSpec(chan, app.shared_caps[("hub", "inp", None)], 0)}  # closed by routes only
    assert spec.args["name"] == "hub"
    assert isinstance(route, RouteSpec) and route.route == MAIN
    assert route.inputs == {chan: 3}  # every replica of a closes the main graph's route


def test_replicas_install_the_same_spec():
    app = app_of(SHARED_APP)
    items, _, _ = static_items(app)
    specs = [items[p][0][2][0] for p in app.decl_procs["g/a"]]
    assert specs[0] == specs[1] == specs[2]


def test_without_shared_nodes():
    app = app_of('''main = "g"
[[graphs]]
name = "g"
nodes = [{ name = "a", ty = "SupSource" }, { name = "k", ty = "NoopConsumer", cloned = 4 }]
connections = [{ cap = 3, ports = ["a:out", "k:inp"] }]
''')
    items, static_count, shared_count = static_items(app)
    assert (static_count, shared_count) == (5, 0)
    assert all(len(v) == 1 and v[0][0] == MAIN for v in items.values())


def test_static_subgraphs_count_and_dynamic_ones_wait_for_their_creator():
    app = app_of('''main = "g"
[[graphs]]
name = "s"
nodes = [{ name = "k", ty = "Transform", cloned = 2 }, { name = "z", ty = "NoopConsumer" }]
inputs = [{ name = "i", cap = 2, ports = ["k:inp"] }]
connections = [{ cap = 2, ports = ["k:out", "z:inp"] }]
[[graphs]]
name = "d"
nodes = [{ name = "q", ty = "NoopConsumer", cloned = 3 }]
inputs = [{ name = "i", cap = 2, ports = ["q:inp"] }]
[[graphs]]
name = "g"
nodes = [{ name = "a", ty = "SupSource" }, { name = "b", ty = "Bcast" }, { name = "sub", ty = "s" },
         { name = "dd", ty = "DynDemux" }, { name = "dyn", ty = "d" }]
connections = [{ cap = 3, ports = ["a:out", "b:inp"] }, { cap = 3, ports = ["b:out", "sub:i"] },
               { cap = 3, ports = ["b:out", "dd:inp"] }, { cap = 3, ports = ["dd:out", "dyn:i"] }]
''')
    items, static_count, shared_count = static_items(app)
    for p in app.decl_procs["d/q"]:
        assert items[p] == []  # DynDemux creates these instances at run time
    for p in app.decl_procs["s/k"]:
        ((top, _, its),) = items[p]
        assert top == MAIN and paths(its) == ["g/sub/k"]
        assert its[0].top == MAIN and its[0].inst != MAIN  # its own instance, counted by the main graph
    assert static_count == 1 + 1 + 1 + 2 + 1  # a, b, dd, sub/k x2, sub/z
    assert shared_count == 0


# --- kill_descendants ----------------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid``, from /proc (the kernel's view, zombies included)."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
        except FileNotFoundError:  # a thread that ended after the listing (an earlier test's)
            pass
    return out


@pytest.fixture
def subreaper():
    """Orphaned grandchildren are reparented to this process (as the supervisor makes itself)."""
    assert ctypes.CDLL(None).prctl(36, 1) == 0  # PR_SET_CHILD_SUBREAPER
    for pid in children_of(os.getpid()):  # orphans of earlier tests' tools (git's shells) that died here
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                os.waitpid(pid, 0)
    assert children_of(os.getpid()) == []  # nothing of ours is running yet


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def fork_family() -> tuple[int, int]:
    """Fork a child that forks a grandchild; both sleep. Returns (child pid, grandchild pid) once
    the grandchild runs."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            grandchild = os.fork()
            if grandchild == 0:
                os.write(w, str(os.getpid()).encode())
                os.close(w)
                while True:
                    time.sleep(3600)
            os.close(w)
            while True:
                time.sleep(3600)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        grandchild = int(f.read())
    return child, grandchild


def test_kill_descendants_kills_children_and_grandchildren(subreaper):
    child, grandchild = fork_family()
    try:
        assert set(children_of(os.getpid())) == {child}
        assert children_of(child) == [grandchild]
        kill_descendants()
        assert children_of(os.getpid()) == []
        with pytest.raises(ChildProcessError):  # reaped already: no zombie left
            os.waitpid(child, os.WNOHANG)
        assert not alive(grandchild)  # killed and reaped (it was reparented to us)
    finally:
        for pid in (grandchild, child):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in (child, grandchild):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def test_kill_descendants_kills_an_orphaned_grandchild(subreaper):
    child, grandchild = fork_family()
    try:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        assert children_of(os.getpid()) == [grandchild]  # reparented to the subreaper
        kill_descendants()
        assert children_of(os.getpid()) == []
        assert not alive(grandchild)
    finally:
        try:
            os.kill(grandchild, signal.SIGKILL)
            os.waitpid(grandchild, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_kill_descendants_with_no_children_returns():
    kill_descendants()
    assert children_of(os.getpid()) == []
