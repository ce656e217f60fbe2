"""Hand-written multiprocessing baselines, shaped like the engine's 3-node chains.

The first baselines run three processes, ``producer -> middle -> consumer`` (the engine runs three
workers: ``source -> Transform -> sink``), forked from the calling process, and the consumer
measures its own rate exactly as the engine's sink does: from the first timed message (after
``warmup`` messages) to the last one. Each function returns the consumer's result dict.

* :func:`raw_frames` -- the "raw limit" for frames: one anonymous shared mapping of ``slots`` frame
  slots; the producer copies each frame ONCE into a free slot and sends the slot index through the
  chain over ``multiprocessing.Pipe`` connections; the consumer checks one byte and returns the slot
  index to the producer, which blocks when no slot is free (honest flow control, like credits).
* :func:`queue_frames` -- the same chain with ``multiprocessing.Queue(maxsize=cap)`` between stages:
  frames are pickled and written through pipes at every hop.
* :func:`pipe_messages` -- small messages, one ``Connection.send`` per message per hop.

The chain baselines (bench_chain.py) are shaped like the engine's 5-worker chain ``source -> 3 relays
-> sink`` (4 hops):

* :func:`ring_messages` -- small messages around a ring of 4 processes: the first both produces and
  consumes (source and sink in one), 3 relays forward; one ``Connection.send`` per message per hop,
  at most ``window`` messages in flight end to end (the producer waits for one to come back before
  sending more: a bound like the engine's credits, ``cap`` per channel).
* :func:`raw_frames` with ``relays=3``: the raw shared-memory limit through 5 processes.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import time
from collections import deque

import numpy as np

CTX = mp.get_context("fork")
SHAPE = (1080, 1920, 3)


def make_pool(count: int, shape=SHAPE) -> list[np.ndarray]:
    """``count`` frames filled once (the engine's FrameSource does the same)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


class _Clock:
    """The consumer's rate measurement (the same as benchmarks/apps/*/ sinks)."""

    def __init__(self, warmup: int):
        self.warmup, self.got, self.bad = warmup, 0, 0
        self.t0 = self.t1 = None

    def tick(self) -> None:
        self.got += 1
        if self.got == self.warmup + 1:
            self.t0 = time.perf_counter()
        self.t1 = time.perf_counter()

    def result(self, **extra) -> dict:
        counted = self.got - self.warmup - 1
        seconds = (self.t1 - self.t0) if counted > 0 else 0.0
        return {"count": self.got, "bad": self.bad, "rate": counted / seconds if counted > 0 else 0.0,
                "seconds": seconds, **extra}


def _run3(producer, middle, consumer, middles: tuple = ()) -> dict:
    """Run the stages as forked processes (``middle``, or each of ``middles``, between producer and
    consumer); return what the consumer sent back."""
    res_r, res_w = CTX.Pipe(duplex=False)
    procs = [CTX.Process(target=producer, daemon=True),
             *[CTX.Process(target=m, daemon=True) for m in (middles or (middle,))],
             CTX.Process(target=consumer, args=(res_w,), daemon=True)]
    for p in procs:
        p.start()
    res_w.close()
    try:
        if not res_r.poll(300):
            raise TimeoutError("baseline consumer did not report within 300 s")
        result = res_r.recv()
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    for p in procs:
        if p.exitcode not in (0, None):
            raise RuntimeError(f"baseline process {p.name} exited with {p.exitcode}")
    return result


# -- frames: raw shared-memory ring --------------------------------------------------------------------
def raw_frames(n: int, slots: int, pool: int, warmup: int, shape=SHAPE, relays: int = 1) -> dict:
    """``relays`` middle processes between producer and consumer (1: the 3-process chain)."""
    frame_bytes = int(np.prod(shape))
    ring = mmap.mmap(-1, slots * frame_bytes)  # MAP_SHARED | MAP_ANONYMOUS: inherited by the forks
    view = np.frombuffer(ring, np.uint8).reshape(slots, *shape)
    hops = [CTX.Pipe(duplex=False) for _ in range(relays + 1)]  # slot indices, stage k -> stage k + 1
    a_w, b_r = hops[0][1], hops[-1][0]
    f_r, f_w = CTX.Pipe(duplex=False)  # consumer -> producer: freed slot index

    def producer():
        frames = make_pool(pool, shape)
        free = deque(range(slots))  # a ring: slots are used in turn (FIFO), as they come back
        for i in range(n):
            if not free:
                free.append(f_r.recv())  # block until the consumer returns a slot
            slot = free.popleft()
            frame = frames[i % pool]
            frame.flat[0] = i & 255
            np.copyto(view[slot], frame)  # the one write of this frame
            a_w.send(slot)
        a_w.send(None)

    def relay(k):
        def middle():
            recv, send = hops[k][0].recv, hops[k + 1][1].send
            while True:
                slot = recv()
                send(slot)
                if slot is None:
                    return
        return middle

    def consumer(res):
        clock = _Clock(warmup)
        while True:
            slot = b_r.recv()
            if slot is None:
                break
            if view[slot, 0, 0, 0] != (clock.got & 255):
                clock.bad += 1
            clock.tick()
            f_w.send(slot)
        res.send(clock.result(frame_bytes=frame_bytes, slots=slots))

    try:
        return _run3(producer, None, consumer, tuple(relay(k) for k in range(relays)))
    finally:
        del view
        ring.close()


# -- frames: multiprocessing.Queue -------------------------------------------------------------------------
def queue_frames(n: int, cap: int, pool: int, warmup: int, shape=SHAPE) -> dict:
    # Queue.put pickles in a feeder thread later; at most cap items are queued and not yet taken,
    # so a pool of at least cap + 2 frames is never mutated before its pickle was written.
    pool = max(pool, cap + 2)
    q1, q2 = CTX.Queue(maxsize=cap), CTX.Queue(maxsize=cap)

    def producer():
        frames = make_pool(pool, shape)
        for i in range(n):
            frame = frames[i % pool]
            frame.flat[0] = i & 255
            q1.put(frame)
        q1.put(None)
        q1.close()
        q1.join_thread()

    def middle():
        while True:
            item = q1.get()
            q2.put(item)
            if item is None:
                break
        q2.close()
        q2.join_thread()

    def consumer(res):
        clock = _Clock(warmup)
        while True:
            frame = q2.get()
            if frame is None:
                break
            if frame[0, 0, 0] != (clock.got & 255):
                clock.bad += 1
            clock.tick()
        res.send(clock.result(frame_bytes=int(np.prod(shape))))

    return _run3(producer, middle, consumer)


# -- small messages: one Connection.send per message ------------------------------------------------------
def pipe_messages(n: int, warmup: int) -> dict:
    a_r, a_w = CTX.Pipe(duplex=False)
    b_r, b_w = CTX.Pipe(duplex=False)

    def producer():
        send = a_w.send
        for i in range(n):
            send({"i": i})
        send(None)

    def middle():
        recv, send = a_r.recv, b_w.send
        while True:
            msg = recv()
            send(msg)
            if msg is None:
                return

    def consumer(res):
        clock = _Clock(warmup)
        recv = b_r.recv
        while True:
            msg = recv()
            if msg is None:
                break
            if msg["i"] != clock.got:
                clock.bad += 1
            clock.tick()
        res.send(clock.result())

    return _run3(producer, middle, consumer)


# -- small messages around a ring: source and sink in one process, 3 relays ------------------------------
def ring_messages(n: int, warmup: int, window: int, relays: int = 3) -> dict:
    """The producer/consumer process sends ``{"i": i}`` to relay 1; relay k forwards to relay k + 1,
    the last back to the producer/consumer, which checks the order; at most ``window`` messages are
    in flight (sent and not yet back). ``relays + 1`` processes and as many hops."""
    hops = [CTX.Pipe(duplex=False) for _ in range(relays + 1)]  # (read end, write end) of stage k -> k + 1

    def relay(k):
        def middle():
            recv, send = hops[k][0].recv, hops[k + 1][1].send
            while True:
                msg = recv()
                send(msg)
                if msg is None:
                    return
        return middle

    def ends(res):
        send, recv = hops[0][1].send, hops[-1][0].recv
        clock = _Clock(warmup)
        sent = 0

        def take():
            msg = recv()
            if msg["i"] != clock.got:
                clock.bad += 1
            clock.tick()

        while sent < n:
            if sent - clock.got >= window:
                take()
            send({"i": sent})
            sent += 1
        while clock.got < n:
            take()
        send(None)
        if recv() is not None:
            clock.bad += 1
        res.send(clock.result(window=window))

    res_r, res_w = CTX.Pipe(duplex=False)
    procs = [CTX.Process(target=ends, args=(res_w,), daemon=True),
             *[CTX.Process(target=relay(k), daemon=True) for k in range(relays)]]
    for p in procs:
        p.start()
    res_w.close()
    try:
        if not res_r.poll(300):
            raise TimeoutError("baseline ring did not report within 300 s")
        result = res_r.recv()
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    for p in procs:
        if p.exitcode not in (0, None):
            raise RuntimeError(f"baseline process {p.name} exited with {p.exitcode}")
    return result
