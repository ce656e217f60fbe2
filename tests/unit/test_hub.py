"""The per-process scheduler: tasks, park/wake, timers, thread calls, yield_now, Future."""

from __future__ import annotations

import os
import socket
import threading
import time

import greenlet
import pytest

from megflow_mp.runtime.hub import Future, Hub, Poller
from tests.support.isolation import run_tasks


@pytest.fixture
def hub():
    h = Hub()
    yield h
    h.close()


run = run_tasks


# --- tasks ---------------------------------------------------------------------------------------------


def test_spawn_runs_at_the_next_scheduling_point(hub):
    log = []
    hub.spawn(log.append, "ran")
    assert log == []
    assert hub.run_until(lambda: bool(log), timeout=5)
    assert log == ["ran"]


def test_spawn_passes_arguments_and_tasks_run_in_order(hub):
    log = []
    for i in range(3):
        hub.spawn(log.append, i)
    assert hub.run_until(lambda: len(log) == 3, timeout=5)
    assert log == [0, 1, 2]


def test_park_returns_the_wake_value(hub):
    got, parked = [], []

    def sleeper():
        parked.append(greenlet.getcurrent())
        got.append(hub.park())

    def waker():
        hub.wake(parked[0], "value")

    run(hub, sleeper, waker)
    assert got == ["value"]


def test_park_outside_a_task_is_an_error(hub):
    assert not hub.in_task()
    with pytest.raises(RuntimeError, match="outside a node task"):
        hub.park()


def test_in_task(hub):
    seen = []
    run(hub, lambda: seen.append(hub.in_task()))
    assert seen == [True]


def test_throw_raises_at_the_blocking_point(hub):
    caught, tasks = [], []

    def victim():
        tasks.append(greenlet.getcurrent())
        try:
            hub.park()
        except KeyError as exc:
            caught.append(exc.args[0])

    run(hub, victim, lambda: hub.throw(tasks[0], KeyError("stop")))
    assert caught == ["stop"]


def test_run_until_times_out(hub):
    start = time.monotonic()
    assert hub.run_until(lambda: False, timeout=0.05) is False
    assert time.monotonic() - start >= 0.05


def test_interrupt_raises_from_run_until_between_tasks_and_wakes_a_waiting_hub(hub):
    """A program's Ctrl-C (Hub.interrupt, from its SIGINT handler or another thread): run_until raises
    KeyboardInterrupt in the main greenlet, waiting or not, with every task left at its blocking point."""
    steps, parked = [], []

    def task():
        parked.append(greenlet.getcurrent())
        steps.append("parked")
        steps.append(hub.park())

    hub.spawn(task)
    threading.Timer(0.05, hub.interrupt).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        hub.run_until(lambda: False, timeout=30)  # waiting without a timer: the wake-up pipe ends the wait
    assert time.monotonic() - start < 10 and steps == ["parked"] and not hub.interrupted
    hub.wake(parked[0], "woken")  # the hub goes on as before: the interrupt was taken once
    assert hub.run_until(lambda: len(steps) == 2, timeout=5) and steps == ["parked", "woken"]


# --- timers ---------------------------------------------------------------------------------------------------


def test_sleep_wakes_tasks_in_deadline_order(hub):
    log = []

    def sleeper(ms):
        def body():
            hub.sleep(ms / 1000)
            log.append(ms)
        return body

    start = time.monotonic()
    run(hub, sleeper(150), sleeper(10), sleeper(80))
    assert log == [10, 80, 150]
    assert time.monotonic() - start >= 0.15


def test_sleep_does_not_block_other_tasks(hub):
    log = []

    def slow():
        hub.sleep(0.2)
        log.append("slow")

    run(hub, slow, lambda: log.append("fast"))
    assert log == ["fast", "slow"]


def test_sleep_outside_a_task_blocks(hub):
    start = time.monotonic()
    hub.sleep(0.05)
    assert time.monotonic() - start >= 0.05


def test_call_later_fires_with_arguments(hub):
    log = []
    hub.call_later(0.01, log.append, "fired")
    assert hub.run_until(lambda: bool(log), timeout=5)
    assert log == ["fired"]


def test_cancelled_timer_never_fires(hub):
    log = []
    timer = hub.call_later(0.01, log.append, "cancelled")
    hub.call_later(0.1, log.append, "done")
    timer.cancel()
    assert hub.run_until(lambda: "done" in log, timeout=5)
    assert log == ["done"]


# --- threads ----------------------------------------------------------------------------------------------------


def test_call_soon_threadsafe_runs_on_the_hub_thread(hub):
    ran_on = []
    thread = threading.Thread(target=hub.call_soon_threadsafe, args=(lambda: ran_on.append(threading.get_ident()),))
    thread.start()
    assert hub.run_until(lambda: bool(ran_on), timeout=10)
    thread.join()
    assert ran_on == [threading.get_ident()]


def test_call_soon_threadsafe_wakes_a_waiting_hub(hub):
    log = []
    go = threading.Event()

    def later():
        go.wait()
        hub.call_soon_threadsafe(log.append, "from thread")

    thread = threading.Thread(target=later)
    thread.start()
    hub.call_later(0, go.set)  # let the thread post only once the hub is running
    assert hub.run_until(lambda: bool(log), timeout=10)
    thread.join()
    assert log == ["from thread"]


def test_many_thread_calls_all_run(hub):
    log = []
    threads = [threading.Thread(target=lambda i=i: [hub.call_soon_threadsafe(log.append, (i, j)) for j in range(200)])
               for i in range(4)]
    for t in threads:
        t.start()
    assert hub.run_until(lambda: len(log) == 800, timeout=10)
    for t in threads:
        t.join()
    assert sorted(log) == [(i, j) for i in range(4) for j in range(200)]


# --- fairness ------------------------------------------------------------------------------------------------------


def test_yield_now_interleaves_tasks(hub):
    log = []

    def worker(name):
        def body():
            for i in range(3):
                log.append(f"{name}{i}")
                hub.yield_now()
        return body

    run(hub, worker("a"), worker("b"))
    assert log == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_yield_now_outside_a_task_returns(hub):
    hub.yield_now()  # nothing to switch to: must not raise nor block
    assert not hub.ready


def test_idle_hooks_run_before_waiting(hub):
    calls = []
    hub.idle_hooks.append(lambda: calls.append(1))
    hub.call_later(0.05, lambda: None)
    hub.run_until(lambda: False, timeout=0.1)
    assert calls


# --- futures -----------------------------------------------------------------------------------------------------------


def test_future_wakes_every_waiter(hub):
    fut = Future(hub)
    got = []

    def waiter():
        got.append(fut.wait())

    run(hub, waiter, waiter, lambda: fut.set("v"))
    assert got == ["v", "v"]


def test_future_keeps_its_first_value(hub):
    fut = Future(hub)
    fut.set(1)
    fut.set(2)
    got = []
    run(hub, lambda: got.append(fut.wait()))  # already done: returns without parking
    assert got == [1] and fut.done


def test_future_set_from_a_thread(hub):
    fut = Future(hub)
    got = []
    thread = threading.Thread(target=hub.call_soon_threadsafe, args=(fut.set, 42))

    def waiter():
        thread.start()
        got.append(fut.wait())

    run(hub, waiter)
    thread.join()
    assert got == [42]


def test_poller_calls_back_for_readable_files_until_they_are_drained():
    poller = Poller()
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        seen = []
        poller.register(a, 1, lambda mask: seen.append(("sock", mask)))
        poller.register(r, 1, lambda mask: seen.append(("pipe", mask)))
        assert poller.select(0) == []
        b.send(b"x")
        os.write(w, b"y")
        for callback, mask in poller.select(1):
            callback(mask)
        assert sorted(name for name, _ in seen) == ["pipe", "sock"]
        assert poller.select(0) != []  # level-triggered: still readable until read
        a.recv(1)
        os.read(r, 1)
        assert poller.select(0) == []
    finally:
        poller.close()
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


def test_poller_register_twice_or_unregister_unknown_is_a_key_error():
    poller = Poller()
    a, b = socket.socketpair()
    try:
        poller.register(a, 1, lambda mask: None)
        with pytest.raises(KeyError):
            poller.register(a, 1, lambda mask: None)
        poller.unregister(a)
        with pytest.raises(KeyError):
            poller.unregister(a)
        r, w = os.pipe()
        poller.register(r, 1, lambda mask: None)
        os.close(r)  # closed before it left: unregistering still works
        poller.unregister(r)
        os.close(w)
    finally:
        poller.close()
        a.close()
        b.close()



def test_only_a_batch_process_hub_yields_before_sleeping():
    made = []

    def build():
        normal = Hub()
        made.append(normal.yields)
        normal.close()
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # this thread only (Linux)
        hub = Hub()
        made.append(hub.yields)
        hub.call_later(0.01, lambda: None)  # a sleep with the yield first: still wakes for its timer
        made.append(hub.run_until(lambda: not hub._timers, timeout=10))
        hub.close()

    t = threading.Thread(target=build)
    t.start()
    t.join()
    assert made == [False, True, True]
