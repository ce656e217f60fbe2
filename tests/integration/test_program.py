"""A Python program runs a graph and talks to it (``Graph``, ``block_on``, ``join``): real worker
processes, shared-memory arrays both ways, errors, ends and cleanup."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.integration.conftest import env, write_app

from megflow_mp import Envelope, Graph, block_on, join, register, yield_now
from megflow_mp.errors import AppFailed, ChannelClosed, ConfigError
from megflow_mp.func_op import map_def


@map_def()
def noop(x):
    return x


@map_def()
def invert(msg):
    msg["data"] = 255 - msg["data"]
    return msg


@map_def()
def explode(msg):
    if msg == 5:
        raise ValueError(f"boom at {msg}")
    return msg


@register(inputs=["a", "b"], outputs=["x", "y"])
class Pair:
    def __init__(self, name, args):
        pass

    def exec(self):
        for inp, out in ((self.a, self.x), (self.b, self.y)):
            envelope = inp.recv()
            if envelope is not None:
                out.send(envelope)


def one_node(ty: str, cap: int = 16, out_cap: int | None = None) -> str:
    return f'''
main = "g"
[[graphs]]
name = "g"
inputs = [{{ name = "inp", cap = {cap}, ports = ["n:inp"] }}]
outputs = [{{ name = "out", cap = {out_cap or cap}, ports = ["n:out"] }}]
nodes = [{{ name = "n", ty = "{ty}" }}]
'''


def feed_and_drain(g: Graph, messages, inp: str = "inp", out: str = "out") -> list[Envelope]:
    """Send every message (partial_id = position) while receiving; return what came back."""
    got = []

    def send():
        port = g.input(inp)
        for i, msg in enumerate(messages):
            port.send(Envelope.pack(msg, info={"partial_id": i}))
        g.close()

    def recv():
        port = g.output(out)
        while (envelope := port.recv()) is not None:
            got.append(envelope)

    block_on(lambda: join([recv, send]))
    return got


def test_ten_thousand_envelopes_come_back_in_order():
    g = Graph(config_str=one_node("Noop"))
    n = 10_000
    start = time.monotonic()
    got = feed_and_drain(g, ({"i": i, "s": f"#{i}"} for i in range(n)))
    rate = n / (time.monotonic() - start)
    g.wait()
    assert [e.partial_id for e in got] == list(range(n))
    assert [e.msg for e in got] == [{"i": i, "s": f"#{i}"} for i in range(n)]
    print(f"{rate:.0f} envelopes/s through a program -> Noop -> program round trip")


def test_1080p_frames_travel_through_shared_memory_both_ways():
    g = Graph(config_str=one_node("Invert", cap=4))
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(3)]
    got = feed_and_drain(g, ({"data": f, "k": k} for k, f in enumerate(frames * 4)))
    host = g._host
    assert host.arena.in_use()["segments"] >= 1  # the frames were copied into the program's shared memory
    for k, envelope in enumerate(got):
        data = envelope.msg["data"]
        assert envelope.msg["k"] == k and data.shape == (1080, 1920, 3) and data.dtype == np.uint8
        assert np.array_equal(data, 255 - frames[k % 3])
        assert host.arena.find(data) is not None  # a view of a worker's shared memory, not a copy
    del got, data, envelope
    g.wait()


def test_an_exception_in_a_node_reaches_the_program_with_the_node_and_the_error():
    g = Graph(config_str=one_node("Explode"))
    with pytest.raises(AppFailed) as failed:
        feed_and_drain(g, range(20))
        g.wait()
    text = str(failed.value)
    assert "node 'g/n'" in text and "ValueError" in text and "boom at 5" in text
    with pytest.raises(AppFailed):  # the graph stays failed, and stopped
        g.wait()


def test_recv_outside_block_on_raises_the_failure():
    g = Graph(config_str=one_node("Explode"))
    inp, out = g.input("inp"), g.output("out")
    for i in range(6):
        inp.send(Envelope.pack(i))
    with pytest.raises(AppFailed, match="boom at 5"):
        while out.recv() is not None:
            pass
        g.wait()


def test_two_graphs_at_once_chained_by_the_program_with_a_plain_join():
    first, second = Graph(config_str=one_node("Noop", cap=2)), Graph(config_str=one_node("Invert", cap=2))
    n, got = 40, []

    def feed():
        port = first.input("inp")
        for i in range(n):
            port.send(Envelope.pack({"data": np.full((64, 64), i, np.uint8)}, info={"partial_id": i}))
        first.close()

    def forward():  # results of one graph are the inputs of the other
        src, dst = first.output("out"), second.input("inp")
        while (envelope := src.recv()) is not None:
            dst.send(envelope)
        second.close()

    def drain():
        port = second.output("out")
        while (envelope := port.recv()) is not None:
            got.append((envelope.partial_id, int(envelope.msg["data"][0, 0]), int(envelope.msg["data"].sum())))

    join([drain, forward, feed])  # outside block_on: the functions still run as concurrent tasks
    first.wait()
    second.wait()
    assert got == [(i, 255 - i, (255 - i) * 64 * 64) for i in range(n)]


def test_a_shared_node_behind_the_graph_inputs_answers_the_program():
    g = Graph(config_str='''
main = "g"
[[nodes]]
name = "common"
ty = "Noop"
[[graphs]]
name = "g"
inputs = [{ name = "inp", cap = 4, ports = ["common:inp"] }]
outputs = [{ name = "out", cap = 4, ports = ["common:out"] }]
''')
    got = feed_and_drain(g, range(100))
    g.wait()
    assert [(e.partial_id, e.msg) for e in got] == [(i, i) for i in range(100)]


@map_def()
def vanish(msg):
    if msg == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return msg


def test_a_worker_killed_under_the_program_is_an_error_naming_its_node():
    g = Graph(config_str=one_node("Vanish"))
    with pytest.raises(AppFailed, match="worker of node 'n' .* was killed by SIGKILL"):
        feed_and_drain(g, range(10))
        g.wait()


def test_send_is_held_back_by_the_channel_caps():
    cap_in, cap_out, n = 4, 4, 2000
    g = Graph(config_str=one_node("Noop", cap=cap_in, out_cap=cap_out))
    counts = {"sent": 0, "received": 0, "ahead": 0}

    def send():
        port = g.input("inp")
        for i in range(n):
            port.send(Envelope.pack(i))
            counts["sent"] += 1
        g.close()

    def recv():
        port = g.output("out")
        while port.recv() is not None:
            counts["received"] += 1
            counts["ahead"] = max(counts["ahead"], counts["sent"] - counts["received"])
            yield_now()

    block_on(lambda: join([recv, send]))
    g.wait()
    assert counts["received"] == n
    # unacknowledged messages on the way in and on the way out, plus the one in the node's hands
    assert counts["ahead"] <= cap_in + cap_out + 1


def test_inputs_and_outputs_are_the_main_graphs():
    g = Graph(config_str='''
main = "g"
[[graphs]]
name = "g"
inputs = [{ name = "left", cap = 4, ports = ["p:a"] }, { name = "right", cap = 4, ports = ["p:b"] }]
outputs = [{ name = "first", cap = 4, ports = ["p:x"] }, { name = "second", cap = 4, ports = ["p:y"] }]
nodes = [{ name = "p", ty = "Pair" }]
''')
    assert g.inputs() == ["left", "right"] and g.outputs() == ["first", "second"]
    with pytest.raises(ValueError, match="inputs: left, right"):
        g.input("nope")
    with pytest.raises(ValueError, match="outputs: first, second"):
        g.output("inp")
    left, right = g.input("left"), g.input("right")
    left.send(Envelope.pack("l"))
    right.send(Envelope.pack("r"))
    g.close()
    with pytest.raises(ChannelClosed):
        left.send(Envelope.pack("late"))
    assert g.output("first").recv().msg == "l" and g.output("first").recv() is None
    assert g.output("second").recv().msg == "r" and g.output("second").recv() is None
    g.wait()


PLUGIN = '''
from megflow import register

@register(inputs=["inp"], outputs=["out"])
class Scale:
    def __init__(self, name, args):
        self.k = args["k"]

    def exec(self):
        envelope = self.inp.recv()
        if envelope is not None:
            self.out.send(envelope.repack(envelope.msg * self.k))
'''

SCALE_TOML = '''
main = "g"
[[graphs]]
name = "g"
inputs = [{ name = "inp", cap = 8, ports = ["s:inp"] }]
outputs = [{ name = "out", cap = 8, ports = ["s:out"] }]
nodes = [{ name = "s", ty = "Scale", k = {{ k }} }]
'''


def test_config_path_with_plugin_path_and_dynamic_path(tmp_path):
    pkg = write_app(tmp_path, "scaler", {"scale.py": PLUGIN})
    config = tmp_path / "scale.toml"
    config.write_text(SCALE_TOML)
    variables = tmp_path / "vars.toml"
    variables.write_text("k = 7\n")
    g = Graph(config_path=str(config), plugin_path=str(pkg), dynamic_path=str(variables), dump=True)
    got = feed_and_drain(g, range(50))
    g.wait()
    assert [e.msg for e in got] == [7 * i for i in range(50)]
    picture = tmp_path / "scale.svg"
    assert picture.exists() and "Scale" in picture.read_text()


def test_dynamic_str_fills_the_template():
    toml = one_node("{{ node }}", cap="{{ cap }}")
    g = Graph(config_str=toml, dynamic_str='node = "Noop"\ncap = 2\n')
    got = feed_and_drain(g, ["a", "b", "c"])
    g.wait()
    assert [e.msg for e in got] == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="dynamic_str"):
        Graph(config_str=toml, dynamic_str="node = ")


# --- the program's end -------------------------------------------------------------------------------------------

SCRIPT = '''
import os, subprocess, sys
from megflow import Envelope, Graph, register
from megflow_mp.supervisor import children_of

@register(inputs=["inp"], outputs=["out"])
class Forks:
    def __init__(self, name, args):
        self.child = subprocess.Popen(["sleep", "1000"]) if os.environ.get("PLUGIN_CHILD") else None

    def exec(self):
        envelope = self.inp.recv()
        if envelope is not None:
            self.out.send(envelope)

g = Graph(config_str="""
main = "g"
[[graphs]]
name = "g"
inputs = [{ name = "inp", cap = 4, ports = ["n:inp"] }]
outputs = [{ name = "out", cap = 4, ports = ["n:out"] }]
nodes = [{ name = "n", ty = "Forks", cloned = 2 }]
""")
g.input("inp").send(Envelope.pack(1))
assert g.output("out").recv().msg == 1
workers = children_of(os.getpid())
below = [p for w in workers for p in children_of(w)]
print(" ".join(map(str, workers)), "|", " ".join(map(str, below)), flush=True)
if os.environ.get("MODE") == "interrupt":
    import signal, threading
    from megflow import block_on, join, sleep

    CTRL_C = os.environ.get("CTRL_C")

    class Lock:
        """The transport's lock; armed, the next time it is taken SIGINT arrives while it is held."""

        def __init__(self):
            self.lock, self.armed = threading.Lock(), False

        def __enter__(self):
            self.lock.acquire()
            if self.armed:
                self.armed = False
                signal.raise_signal(signal.SIGINT)
            return self

        def __exit__(self, *exc):
            self.lock.release()

    lock = g._host.transport._lock = Lock()

    def send():
        port = g.input("inp")
        i = 0
        while True:
            port.send(Envelope.pack(i))
            i += 1
            sleep(1)

    def recv():
        port = g.output("out")
        if CTRL_C != "busy":
            print("running", flush=True)
        if CTRL_C == "in_lock":
            sys.stdin.readline()  # the test watches the workers first
            lock.armed = True
        while port.recv() is not None:
            pass

    def busy():  # a task that computes and never lets the hub run
        print("running", flush=True)
        while True:
            pass

    block_on(lambda: join([recv, busy if CTRL_C == "busy" else send]))
else:
    sys.stdin.readline()  # the test says when to exit (or kills this process)
'''


def start_script(tmp_path, **environ) -> tuple[subprocess.Popen, list[int], list[int]]:
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**env(), **environ})
    workers, _, below = proc.stdout.readline().partition("|")
    assert workers.strip(), proc.communicate()[1]
    return proc, [int(p) for p in workers.split()], [int(p) for p in below.split()]


def watch(pids: list[int]) -> list[int]:
    return [os.pidfd_open(pid) for pid in pids]


def all_ended(pidfds: list[int]) -> bool:
    """Whether every watched process exited (a pidfd turns readable then); waits at most 30 s."""
    try:
        left = set(pidfds)
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            ready, _, _ = select.select(list(left), [], [], deadline - time.monotonic())
            left -= set(ready)
        return not left
    finally:
        for fd in pidfds:
            os.close(fd)


def test_a_program_that_exits_without_wait_leaves_no_process(tmp_path):
    proc, workers, below = start_script(tmp_path, PLUGIN_CHILD="1")
    assert len(workers) == 2 and len(below) == 2  # two replicas, each with its plugin's child
    fds = watch(workers + below)
    proc.stdin.close()  # the script ends without g.wait()
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    for pid in workers:  # stopped and reaped by the program itself before it exited
        assert not os.path.exists(f"/proc/{pid}")
    assert all_ended(fds)


def test_a_killed_program_takes_its_workers_along(tmp_path):
    proc, workers, _ = start_script(tmp_path)
    fds = watch(workers)
    proc.kill()
    proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()
    proc.stdin.close()
    assert all_ended(fds)


def test_ctrl_c_in_the_program_stops_the_graph(tmp_path):
    proc, workers, _ = start_script(tmp_path, MODE="interrupt")
    fds = watch(workers)
    assert proc.stdout.readline().strip() == "running"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}")
    assert all_ended(fds)


def interrupted(proc: subprocess.Popen, timeout: float) -> str:
    """The stderr of ``proc``, which must end within ``timeout`` seconds by a KeyboardInterrupt
    (killed, and the test failed, when it does not)."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the program did not end within {timeout:g} s of Ctrl-C")
    assert proc.returncode != 0 and "Traceback" in err and err.rstrip().endswith("KeyboardInterrupt"), err
    return err


def test_ctrl_c_while_the_engine_holds_its_lock_still_stops_the_graph(tmp_path):
    """SIGINT lands while the program's engine is in the middle of its work (here: holding the
    transport's lock, which Python's own handler would leave taken by raising there, and the stop,
    which writes to the workers, would then wait on for ever); the hub takes it between tasks."""
    proc, workers, _ = start_script(tmp_path, MODE="interrupt", CTRL_C="in_lock")
    fds = watch(workers)
    assert proc.stdout.readline().strip() == "running"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    err = interrupted(proc, timeout=30)
    frames = [line for line in err.splitlines() if line.lstrip().startswith("File ")]
    assert "in run_until" in frames[-1]  # raised by the hub's loop, not inside the engine
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}")
    assert all_ended(fds)


def test_a_second_ctrl_c_stops_a_program_whose_task_computes(tmp_path):
    """A task that computes keeps the hub from taking Ctrl-C; a second one raises at once and kills the workers."""
    proc, workers, _ = start_script(tmp_path, MODE="interrupt", CTRL_C="busy")
    fds = watch(workers)
    assert proc.stdout.readline().strip() == "running"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # taken at the task's next send, recv, sleep or yield: none comes
    proc.send_signal(signal.SIGINT)
    interrupted(proc, timeout=30)
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}")
    assert all_ended(fds)
