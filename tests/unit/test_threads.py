"""run_on_hub: a thread runs a function as a hub task and gets its result, exception or Cancelled."""

from __future__ import annotations

import threading

import greenlet
import pytest

from megflow_mp.errors import Cancelled
from megflow_mp.runtime.hub import Future, Hub
from megflow_mp.runtime.threads import off_hub, run_on_hub


@pytest.fixture
def hub():
    h = Hub()
    yield h
    h.close()


def from_thread(hub: Hub, fn) -> dict:
    """Run ``fn()`` on a new thread while this thread runs the hub; ``{"value": ...}`` or ``{"error": ...}``."""
    outcome: dict = {}

    def body():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            outcome["error"] = exc
        finally:
            hub.call_soon_threadsafe(lambda: None)  # make the hub look at ``outcome`` again

    thread = threading.Thread(target=body)
    thread.start()
    finished = hub.run_until(lambda: bool(outcome), timeout=10)
    thread.join(timeout=10)  # before the hub (and its wake-up pipe) is closed
    assert finished and not thread.is_alive()
    return outcome


def test_off_hub():
    hub = Hub()
    try:
        assert off_hub(hub) is False
        seen = []
        thread = threading.Thread(target=lambda: seen.append(off_hub(hub)))
        thread.start()
        thread.join()
        assert seen == [True]
    finally:
        hub.close()


def test_returns_the_value(hub):
    ran = []

    def fn(a, b):
        ran.append((threading.get_ident(), hub.in_task()))
        return a + b

    assert from_thread(hub, lambda: run_on_hub(hub, fn, 2, 3)) == {"value": 5}
    assert ran == [(threading.get_ident(), True)]  # a task on the hub's thread


def test_returns_none(hub):
    assert from_thread(hub, lambda: run_on_hub(hub, lambda: None)) == {"value": None}


def test_raises_the_exception(hub):
    error = ValueError("bad")

    def fn():
        raise error

    outcome = from_thread(hub, lambda: run_on_hub(hub, fn))
    assert outcome["error"] is error


def test_raises_base_exceptions_too(hub):
    def fn():
        raise Cancelled()

    outcome = from_thread(hub, lambda: run_on_hub(hub, fn))
    assert type(outcome["error"]) is Cancelled


def test_cancelled_raises_without_running(hub):
    ran = []
    outcome = from_thread(hub, lambda: run_on_hub(hub, ran.append, 1, cancelled=lambda: True))
    assert type(outcome["error"]) is Cancelled
    assert ran == []


def test_not_cancelled_runs(hub):
    outcome = from_thread(hub, lambda: run_on_hub(hub, lambda: "ran", cancelled=lambda: False))
    assert outcome == {"value": "ran"}


def test_the_task_may_sleep(hub):
    log = []

    def fn():
        log.append("before")
        hub.sleep(0.01)
        log.append("after")
        return "slept"

    hub.spawn(lambda: log.append("other task"))
    outcome = from_thread(hub, lambda: run_on_hub(hub, fn))
    assert outcome == {"value": "slept"}
    assert log == ["other task", "before", "after"]


def test_the_task_may_park_while_other_tasks_run(hub):
    fut = Future(hub)
    log = []

    def fn():
        parked = greenlet.getcurrent()

        def setter():
            log.append("setter ran while fn was parked")
            assert not parked.dead
            fut.set("woken")

        hub.spawn(setter)
        return fut.wait()

    outcome = from_thread(hub, lambda: run_on_hub(hub, fn))
    assert outcome == {"value": "woken"}
    assert log == ["setter ran while fn was parked"]


def test_calls_from_several_threads(hub):
    results: dict = {}

    def body(i):
        results[i] = run_on_hub(hub, lambda: i * i)
        hub.call_soon_threadsafe(lambda: None)  # make the hub look at ``results`` again

    threads = [threading.Thread(target=body, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    finished = hub.run_until(lambda: len(results) == 8, timeout=10)
    for t in threads:
        t.join(timeout=10)
    assert finished
    assert results == {i: i * i for i in range(8)}


def test_call_soon_threadsafe_after_close_does_not_touch_the_closed_pipe():
    hub = Hub()
    hub.close()
    hub.call_soon_threadsafe(lambda: None)
