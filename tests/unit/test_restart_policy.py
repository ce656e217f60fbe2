"""Restart policies (megflow_mp.restarts): which node gets which policy in which app, the sliding
window of a worker's budget, its backoff, and what the app's error says when none is left."""

from __future__ import annotations

import pytest

from megflow_mp.config import load_config_string
from megflow_mp.errors import ConfigError
from megflow_mp.graph import build_app
from megflow_mp.registry import builtin_registry
from megflow_mp.restarts import DEFAULT_LIMIT, RestartBudget, RestartPolicy, backoff

KILLED = "was killed by SIGKILL"
EXITED = "exited with code 1"

SERVER = '''main = "g"
[[graphs]]
name = "g"
nodes = [{{ name = "door", ty = "{door}", port = 1 }}, {{ name = "work", ty = "Transform" {extra} }}]
connections = [{{ cap = 4, ports = ["door:out", "work:inp"] }}, {{ cap = 4, ports = ["work:out", "door:inp"] }}]
'''

BATCH = '''main = "g"
[[graphs]]
name = "g"
nodes = [{{ name = "a", ty = "NoopProducer" }}, {{ name = "k", ty = "NoopConsumer" {extra} }}]
connections = [{{ cap = 4, ports = ["a:out", "k:inp"] }}]
'''


def app(text: str):
    return build_app(load_config_string(text), builtin_registry())


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


VIDEO = '''main = "g"
[[nodes]]
name = "shared"
ty = "Transform"
[[graphs]]
name = "sub"
inputs = [{ name = "inp", cap = 4, ports = ["shared:inp"] }]
outputs = [{ name = "out", cap = 4, ports = ["shared:out"] }]
[[graphs]]
name = "g"
nodes = [{ name = "door", ty = "VideoServer", port = 1 }, { name = "dest", ty = "sub" }]
connections = [{ cap = 4, ports = ["door:out", "dest:inp"] }, { cap = 4, ports = ["door:inp", "dest:out"] }]
'''


def test_a_videoserver_app_restarts_its_shared_node_but_not_the_videoserver_by_default():
    a = app(VIDEO)
    assert a.front_door and a.policy("@/shared") == RestartPolicy(DEFAULT_LIMIT, True)
    door = a.policy("g/door")  # it creates the streams' instances: not restarted unless it says restart = N
    assert not door.restarts and door.describe() == ("no restart (a node that creates subgraph instances is not "
                                                     "restarted by default)")
    assert app(VIDEO.replace('port = 1 }', 'port = 1, restart = 2 }')).policy("g/door").limit == 2


@pytest.mark.parametrize("door", ["ImageServer", "BytesServer"])
def test_an_app_with_a_front_door_gives_its_nodes_the_default_policy(door):
    a = app(SERVER.format(door=door, extra=""))
    assert a.front_door
    for key in ("g/door", "g/work"):
        p = a.policy(key)
        assert p == RestartPolicy(DEFAULT_LIMIT, signals_only=True) and p.restarts
        assert p.covers(KILLED) and p.covers("was killed by SIGSEGV") and not p.covers(EXITED)


def test_an_explicit_restart_keeps_its_meaning_in_any_app():
    with_door = app(SERVER.format(door="ImageServer", extra=", restart = 0"))
    assert not with_door.policy("g/work").restarts and with_door.policy("g/door").restarts
    three = app(SERVER.format(door="ImageServer", extra=", restart = 3")).policy("g/work")
    assert three == RestartPolicy(3, explicit=True) and three.covers(EXITED) and three.covers(KILLED)
    batch = app(BATCH.format(extra=", restart = 2"))
    assert batch.policy("g/k").limit == 2 and batch.policy("g/k").covers(EXITED)


def test_an_app_without_a_front_door_restarts_nothing_by_default():
    a = app(BATCH.format(extra=""))
    assert not a.front_door
    assert not a.policy("g/a").restarts and not a.policy("g/k").covers(KILLED)
    assert a.decls["g/k"].restart is None


def test_restart_must_be_a_non_negative_integer():
    with pytest.raises(ConfigError, match="restart must be an integer >= 0"):
        app(BATCH.format(extra=", restart = -1"))


def test_the_budget_is_a_sliding_window_with_a_growing_backoff():
    clock = Clock()
    budget = RestartBudget(RestartPolicy.of(None, True), clock)
    delays = []
    for _ in range(5):
        delays.append(budget.take(KILLED))
        clock.now += 1
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert budget.take(KILLED) is None and budget.spent(KILLED)  # the 6th within 60 s
    assert "budget is spent, 5 restarts within the last 60 s" in budget.why_not(KILLED)
    assert "at most 5 restarts within 60 s" in budget.why_not(KILLED)
    clock.now += 55.5  # the first restart left the window: one more, after the backoff of 4 others
    assert budget.recent() == 4 and budget.take(KILLED) == 4.0
    clock.now += 61  # a quiet minute: the budget and the backoff start over
    assert budget.recent() == 0 and budget.take(KILLED) == 0.0 and budget.total == 7


def test_the_default_policy_does_not_restart_a_worker_that_exited_with_a_code():
    budget = RestartBudget(RestartPolicy.of(None, True), Clock())
    assert budget.take(EXITED) is None and not budget.spent(EXITED)
    assert budget.why_not(EXITED) == ("; not started again: it was not killed by a signal (the default policy of "
                                      "an app with a front door: a worker killed by a signal, at most 5 restarts "
                                      "within 60 s)")


def test_restart_zero_and_no_front_door_say_nothing_more():
    for policy in (RestartPolicy.of(0, True), RestartPolicy.of(None, False)):
        budget = RestartBudget(policy, Clock())
        assert budget.take(KILLED) is None and budget.why_not(KILLED) == ""


def test_backoff_is_capped():
    assert [backoff(n) for n in range(8)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
