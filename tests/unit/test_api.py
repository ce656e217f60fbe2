"""The plugin API's asynchronous helpers: sleep, yield_now, join, create_future.

Outside any hub they fall back to blocking/sequential behaviour; inside a hub task they act on the
hub (here a real Hub installed as this thread's hub, as ``megflow_mp.testing`` does).
"""

from __future__ import annotations

import pickle
import threading

import pytest

from megflow_mp import api, create_future, join, sleep, yield_now
from megflow_mp.runtime import worker as worker_mod
from megflow_mp.runtime.hub import Future, Hub


@pytest.fixture(autouse=True)
def no_worker():
    assert worker_mod.current_worker() is None  # these tests run outside any worker


@pytest.fixture
def hub():
    """A Hub that the API helpers of this test (and the tasks it spawns) use."""
    h = Hub()
    with api.using_hub(h):
        yield h
    h.close()


def run(hub: Hub, *fns, timeout: float = 10) -> None:
    """Spawn each function as a task and run the hub until all of them returned (or raised)."""
    left = [len(fns)]

    def wrap(fn):
        try:
            fn()
        finally:
            left[0] -= 1

    for fn in fns:
        hub.spawn(wrap, fn)
    assert hub.run_until(lambda: left[0] == 0, timeout=timeout), "tasks did not finish"


# --- outside any hub ----------------------------------------------------------------------------------------


def test_no_hub_outside_a_node():
    assert api.current_hub() is None


def test_sleep_outside_a_hub_blocks_the_thread(monkeypatch):
    slept = []
    monkeypatch.setattr(api.time, "sleep", slept.append)
    sleep(250)
    assert slept == [0.25]


def test_yield_now_outside_a_hub_returns():
    assert yield_now() is None


def test_join_outside_a_hub_runs_the_tasks_in_order():
    log = []
    assert join([lambda: log.append("a") or 1, lambda: log.append("b") or 2]) == [1, 2]
    assert log == ["a", "b"]


def test_join_takes_any_iterable():
    assert join(iter([lambda: 1, lambda: 2])) == [1, 2]
    assert join([]) == []


def test_join_outside_a_hub_raises_the_error():
    def boom():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        join([lambda: 1, boom])


def test_join_outside_a_hub_runs_every_task_before_raising():
    ran = []

    def boom():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        join([boom, lambda: ran.append("second")])
    assert ran == ["second"]


def test_create_future_outside_a_node_is_an_error():
    with pytest.raises(RuntimeError, match="needs a running node"):
        create_future()


# --- inside a hub task ----------------------------------------------------------------------------------------


def test_current_hub_is_the_installed_one(hub):
    assert api.current_hub() is hub


def test_sleep_in_a_task_lets_other_tasks_run(hub):
    log = []

    def sleeper(ms):
        def body():
            sleep(ms)
            log.append(ms)
        return body

    run(hub, sleeper(60), sleeper(5), lambda: log.append("busy"))
    assert log == ["busy", 5, 60]


def test_sleep_in_a_task_does_not_block_the_thread(hub, monkeypatch):
    blocked = []
    monkeypatch.setattr(api.time, "sleep", blocked.append)
    run(hub, lambda: sleep(1))
    assert blocked == []


def test_yield_now_in_a_task_interleaves(hub):
    log = []

    def worker(name):
        def body():
            for i in range(3):
                log.append(f"{name}{i}")
                yield_now()
        return body

    run(hub, worker("a"), worker("b"))
    assert log == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_join_in_a_task_runs_the_functions_concurrently(hub):
    fut = Future(hub)
    got = []

    def waits():
        return fut.wait()  # would never return if the functions ran one after the other

    def sets():
        fut.set("from b")
        return "b"

    run(hub, lambda: got.append(join([waits, sets])))
    assert got == [["from b", "b"]]


def test_join_in_a_task_keeps_the_order_of_the_functions(hub):
    got = []

    def slow():
        for _ in range(3):
            yield_now()
        return "slow"

    run(hub, lambda: got.append(join([slow, lambda: "fast"])))
    assert got == [["slow", "fast"]]


def test_join_in_a_task_reraises_the_first_error_after_all_finished(hub):
    log, caught = [], []

    def first():
        yield_now()
        raise KeyError("first")

    def second():
        yield_now()
        yield_now()
        raise ValueError("second")

    def last():
        for _ in range(4):
            yield_now()
        log.append("last finished")

    def body():
        try:
            join([last, second, first])
        except Exception as exc:  # noqa: BLE001 - inspected below
            caught.append(exc)

    run(hub, body)
    assert log == ["last finished"]
    assert [type(e) for e in caught] == [KeyError]


def test_join_of_nothing_in_a_task(hub):
    got = []
    run(hub, lambda: got.append(join([])))
    assert got == [[]]


def test_create_future_in_a_task(hub):
    got = []
    fut, waker = create_future()

    run(hub, lambda: got.append(fut.wait()), lambda: waker.wake("done"))
    assert got == ["done"]


def test_create_future_callback_maps_the_result(hub):
    got = []
    fut, waker = create_future(lambda r: r * 2)
    run(hub, lambda: got.append(fut.wait()), lambda: waker.wake(21))
    assert got == [42]


def test_wake_without_a_result_gives_none(hub):
    got = []
    fut, waker = create_future()
    run(hub, lambda: got.append(fut.wait()), waker.wake)
    assert got == [None]


def test_waker_fired_from_another_thread(hub):
    got = []
    fut, waker = create_future()

    def waiter():
        thread = threading.Thread(target=waker.wake, args=("from a thread",))
        thread.start()
        got.append(fut.wait())
        thread.join()  # done before the hub (and its wake-up pipe) is closed

    run(hub, waiter)
    assert got == ["from a thread"]


def test_future_waited_from_another_thread(hub):
    fut, waker = create_future()
    got = []

    def other_thread():
        got.append(fut.wait())
        hub.call_soon_threadsafe(lambda: None)  # make the hub look at ``got`` again

    thread = threading.Thread(target=other_thread)
    thread.start()
    hub.call_later(0, waker.wake, "shared")
    finished = hub.run_until(lambda: bool(got), timeout=10)
    thread.join(timeout=10)
    assert finished and got == ["shared"]


def test_unpickled_waker_without_a_worker_cannot_wake(hub):
    _, waker = create_future()
    copy = pickle.loads(pickle.dumps(waker))
    with pytest.raises(RuntimeError, match="another process"):
        copy.wake(1)
