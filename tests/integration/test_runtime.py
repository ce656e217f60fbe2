"""Whole apps on real processes: end of stream, faults, signals, backpressure, replicas, cleanup."""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
import time

import pytest

from tests.integration.conftest import ROOT, communicate, run_cli, start_cli, wait_for_line, write_app

from megflow_mp.supervisor import children_of as _children_of
from tests.support.procfs import proc_name

PIPE_TOML = """
main = "g"
[[graphs]]
name = "g"
connections = [
  { cap = {cap}, ports = ["src:out", "mid:inp"] },
  { cap = {cap}, ports = ["mid:out", "sink:inp"] },
]
  [[graphs.nodes]]
  name = "src"
  ty = "Src"
  n = {n}
  [[graphs.nodes]]
  name = "mid"
  ty = "{mid}"
  cloned = {cloned}
  [[graphs.nodes]]
  name = "sink"
  ty = "Sink"
"""

NODES = """
import json, os, sys, time
import numpy as np
from megflow import register, Envelope, sleep

@register(outputs=["out"])
class Src:
    def __init__(self, name, args):
        self.n = args["n"]
    def exec(self):
        for i in range(self.n):
            self.out.send(Envelope.pack({"i": i, "a": np.full(1000, i % 251, np.uint8), "t": time.monotonic()},
                                        info={"partial_id": i}))
            if os.environ.get("SLOW_SOURCE"):
                sleep(20)

@register(inputs=["inp"], outputs=["out"])
class Tag:
    def __init__(self, name, args):
        pass
    def exec(self):
        e = self.inp.recv()
        if e is None:
            return
        e.msg["pid"] = os.getpid()
        self.out.send(e)

@register(inputs=["inp"], outputs=["out"])
class Boom:
    def __init__(self, name, args):
        pass
    def exec(self):
        e = self.inp.recv()
        if e is not None and e.msg["i"] == 3:
            raise ValueError("boom at 3")
        if e is not None:
            self.out.send(e)

@register(inputs=["inp"])
class Sink:
    def __init__(self, name, args):
        self.seen = 0
    def exec(self):
        e = self.inp.recv()
        if e is None:
            print("sink done", self.seen, flush=True)
            return
        m = e.msg
        assert int(m["a"][0]) == m["i"] % 251 and m["a"].shape == (1000,)
        self.seen += 1
        print("got " + json.dumps({"i": m["i"], "pid": m.get("pid"), "sent": m["t"], "at": time.monotonic()}), flush=True)
        if os.environ.get("SLOW_SINK"):
            time.sleep(0.01)

    def __del__(self):
        print("finalised sink", flush=True)
"""


def pipe_app(tmp_path, n=50, mid="Transform", cloned=1, cap=4):
    toml = PIPE_TOML.replace("{n}", str(n)).replace("{mid}", mid).replace("{cloned}", str(cloned))
    return write_app(tmp_path, "pipe", {"pipe.toml": toml.replace("{cap}", str(cap)), "nodes.py": NODES})


def got(stdout: str) -> list[dict]:
    return [json.loads(line[4:]) for line in stdout.splitlines() if line.startswith("got ")]


def test_logical_test_passes():
    r = run_cli("run", "-p", "plugins/logical_test", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "logical_test pass" in r.stdout


@pytest.mark.slow
def test_process_count_does_not_depend_on_instances(tmp_path):
    counts = []
    for n in (10, 300):
        text = (ROOT / "plugins/logical_test/logical_test.toml").read_text().replace("n = 300", f"n = {n}")
        cfg = tmp_path / f"lt{n}.toml"
        cfg.write_text(text)
        r = run_cli("run", "-c", cfg, "-p", "plugins/logical_test", timeout=120)
        assert r.returncode == 0, r.stderr
        assert "logical_test pass" in r.stdout
        counts.append(int(re.search(r"starting (\d+) worker processes", r.stderr).group(1)))
    assert counts[0] == counts[1]


def test_every_message_arrives_once_in_order_and_node_is_finalised(tmp_path):
    app = pipe_app(tmp_path, n=200)
    r = run_cli("run", "-p", app)
    assert r.returncode == 0, r.stderr
    assert [m["i"] for m in got(r.stdout)] == list(range(200))
    lines = r.stdout.splitlines()
    assert lines.index("sink done 200") < lines.index("finalised sink")


def test_cloned_replicas_share_the_work(tmp_path):
    app = pipe_app(tmp_path, n=300, mid="Tag", cloned=2, cap=2)
    r = run_cli("run", "-p", app)
    assert r.returncode == 0, r.stderr
    msgs = got(r.stdout)
    assert sorted(m["i"] for m in msgs) == list(range(300))
    assert len({m["pid"] for m in msgs}) == 2, "both replicas should have taken messages"


def test_exception_in_static_node_fails_the_run_with_its_name_and_traceback(tmp_path):
    app = pipe_app(tmp_path, n=50, mid="Boom")
    r = run_cli("run", "-p", app)
    assert r.returncode == 1
    assert "node 'g/mid'" in r.stderr and "ValueError: boom at 3" in r.stderr
    assert 'nodes.py", line' in r.stderr


def test_backpressure_bounds_how_far_the_source_runs_ahead(tmp_path):
    app = pipe_app(tmp_path, n=60, cap=2)
    env_slow = dict(os.environ, SLOW_SINK="1")
    os.environ.update(env_slow)
    try:
        r = run_cli("run", "-p", app)
    finally:
        os.environ.pop("SLOW_SINK")
    assert r.returncode == 0, r.stderr
    msgs = got(r.stdout)
    arrival = {m["i"]: m["at"] for m in msgs}
    # message k can only have been sent after message k - bound was received: the channels
    # (cap 2 per hop, two hops) plus one message in each node's hands bound the distance
    bound = 8
    for m in msgs:
        if m["i"] >= bound + 5:
            assert m["sent"] >= arrival[m["i"] - bound - 5], f"source ran ahead at {m['i']}"


def test_killed_worker_is_reported_by_name_and_the_app_ends(tmp_path):
    os.environ["SLOW_SOURCE"] = "1"
    try:
        proc = start_cli("run", "-p", pipe_app(tmp_path, n=10_000))
    finally:
        os.environ.pop("SLOW_SOURCE")
    wait_for_line(proc, "got ")
    mid_pid = _worker_pid(proc.pid, "mid")
    os.kill(mid_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "worker of node 'mid'" in err and "SIGKILL" in err


STALL = """
@register(inputs=["inp"], outputs=["out"])
class Stall:
    def __init__(self, name, args):
        pass
    def exec(self):
        if self.inp.recv() is not None:
            print("stalled", flush=True)
            time.sleep(1000)  # holds its input: the source runs out of credit and waits
"""


def test_a_sender_waiting_on_a_killed_receiver_gets_peer_died(tmp_path):
    toml = PIPE_TOML.replace("{n}", "10000").replace("{mid}", "Stall").replace("{cloned}", "1")
    app = write_app(tmp_path, "stall", {"stall.toml": toml.replace("{cap}", "2"), "nodes.py": NODES + STALL})
    proc = start_cli("run", "-p", app)
    wait_for_line(proc, "stalled")
    os.kill(_worker_pid(proc.pid, "mid"), signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "worker of node 'mid'" in err and "SIGKILL" in err
    assert "node 'g/src' failed: peer died" in err, err


def test_sigkill_of_the_supervisor_leaves_no_worker(tmp_path):
    os.environ["SLOW_SOURCE"] = "1"
    try:
        proc = start_cli("run", "-p", pipe_app(tmp_path, n=10_000))
    finally:
        os.environ.pop("SLOW_SOURCE")
    wait_for_line(proc, "got ")
    workers = _descendants(proc.pid)
    assert len(workers) == 3
    proc.kill()
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.05)
    assert not any(_alive(p) for p in workers)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_drains_and_exits_zero(tmp_path, sig):
    os.environ["SLOW_SOURCE"] = "1"
    try:
        proc = start_cli("run", "-p", pipe_app(tmp_path, n=10_000))
    finally:
        os.environ.pop("SLOW_SOURCE")
    lines = wait_for_line(proc, "got ")
    proc.send_signal(sig)
    out, err = communicate(proc)
    assert proc.returncode == 0, err
    msgs = got("".join(lines) + out)
    assert [m["i"] for m in msgs] == list(range(len(msgs))), "drain must not lose queued messages"
    assert f"sink done {len(msgs)}" in out
    assert "finalised sink" in out


def test_second_ctrl_c_stops_at_once(tmp_path):
    slow = tmp_path / "slow"
    write_app(tmp_path, "slow", {"slow.toml": PIPE_TOML.replace("{n}", "5").replace("{mid}", "Stuck")
                                 .replace("{cloned}", "1").replace("{cap}", "2"),
                                 "nodes.py": NODES + STUCK})
    proc = start_cli("run", "-p", slow)
    wait_for_line(proc, "stuck")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=15)
    assert proc.returncode == 130


STUCK = """
@register(inputs=["inp"], outputs=["out"])
class Stuck:
    def __init__(self, name, args):
        pass
    def exec(self):
        e = self.inp.recv()
        print("stuck", flush=True)
        time.sleep(3600)
"""


DYN_TOML = """
main = "main"
[[graphs]]
name = "sub"
inputs = [{ name = "inp", cap = 4, ports = ["w:inp"] }]
[[graphs.nodes]]
name = "w"
ty = "Work"
[[graphs]]
name = "main"
connections = [
  { cap = 4, ports = ["src:out", "demux:inp"] },
  { cap = 4, ports = ["demux:out", "sub:inp"] },
]
[[graphs.nodes]]
name = "src"
ty = "Src"
rounds = {rounds}
[[graphs.nodes]]
name = "demux"
ty = "DynDemux"
[[graphs.nodes]]
name = "sub"
ty = "sub"
"""

DYN_SOURCE = """
import json, sys, threading, time
from megflow import register, Envelope

@register(outputs=["out"])
class Src:  # sends ``rounds`` messages to each of 4 addresses, then ends each address
    def __init__(self, name, args):
        self.rounds = args["rounds"]
    def exec(self):
        for k in range(self.rounds):
            for addr in range(4):
                e = Envelope.pack({"addr": addr, "k": k})
                e.to_addr = addr
                self.out.send(e)
        for addr in range(4):
            e = Envelope.pack(None)
            e.to_addr = addr
            self.out.send(e)
"""


def dyn_app(tmp_path, work: str, rounds: int):
    """Source -> DynDemux -> 4 instances of a subgraph holding one ``Work`` node (given as code)."""
    return write_app(tmp_path, "dyn", {"dyn.toml": DYN_TOML.replace("{rounds}", str(rounds)),
                                       "nodes.py": DYN_SOURCE + textwrap.dedent(work)})


COUNTING_WORK = """
@register(inputs=["inp"])
class Work:
    \"\"\"Counts its instance's messages and prints the count at the end; raises on message ``k`` of
    address 2 when the app's ``break_at`` says so.\"\"\"
    def __init__(self, name, args):
        self.n, self.break_at = 0, args.get("break_at")
    def exec(self):
        e = self.inp.recv()
        if e is None:
            print("instance done", self.addr, self.n, flush=True)
            return
        self.addr = e.msg["addr"]
        if self.addr == 2 and e.msg["k"] == self.break_at:
            raise RuntimeError("instance 2 broke")
        self.n += 1
"""


def counted(r) -> list[str]:
    return sorted(line for line in r.stdout.splitlines() if line.startswith("instance done"))


def test_exception_in_a_dynamic_instance_ends_only_that_instance(tmp_path):
    app = dyn_app(tmp_path, COUNTING_WORK, rounds=5)
    (app / "dyn.toml").write_text((app / "dyn.toml").read_text().replace('ty = "Work"', 'ty = "Work"\nbreak_at = 1'))
    r = run_cli("run", "-p", app)
    assert "RuntimeError: instance 2 broke" in r.stderr
    assert "main/sub#2/w" in r.stderr  # the failing instance is named
    assert counted(r) == ["instance done 0 5", "instance done 1 5", "instance done 3 5"]
    assert r.returncode == 0


def test_cloned_dyndemux_keeps_each_address_on_one_replica(tmp_path):
    """``cloned = 2``: every envelope of an address reaches the same DynDemux replica, so each
    address has one instance that sees all its messages (split between replicas, an address would
    have two instances, each with part of them)."""
    app = dyn_app(tmp_path, COUNTING_WORK, rounds=20)
    (app / "dyn.toml").write_text((app / "dyn.toml").read_text().replace('ty = "DynDemux"', 'ty = "DynDemux"\ncloned = 2'))
    r = run_cli("run", "-p", app)
    assert r.returncode == 0, r.stderr
    assert counted(r) == [f"instance done {a} 20" for a in range(4)]


def test_plugin_import_error_names_the_file_before_any_process_starts(tmp_path):
    app = pipe_app(tmp_path)
    (app / "broken.py").write_text("import json\n\ndef f(:\n    pass\n")
    r = run_cli("run", "-p", app)
    assert r.returncode == 1
    assert "broken.py" in r.stderr and "SyntaxError" in r.stderr
    assert "starting" not in r.stderr


def test_bad_config_names_file_and_field_without_traceback(tmp_path):
    app = pipe_app(tmp_path)
    cfg = app / "pipe.toml"
    cfg.write_text(cfg.read_text().replace('"mid:out", "sink:inp"', '"mid:out", "sink:nope"'))
    r = run_cli("check", "-p", app)
    assert r.returncode == 1
    assert "pipe.toml: graphs[0].connections[1].ports[1]" in r.stderr
    assert "node 'sink'" in r.stderr and "inp" in r.stderr
    assert "Traceback" not in r.stderr
    cfg.write_text(cfg.read_text().replace('ty = "Sink"', 'ty = "Sinkk"'))
    r = run_cli("check", "-p", app)
    assert r.returncode == 1 and "unknown node type 'Sinkk'" in r.stderr and "Transform" in r.stderr


def test_check_accepts_a_valid_app(tmp_path):
    r = run_cli("check", "-p", pipe_app(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


# -- helpers -----------------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    out, stack = [], _children_of(pid)
    while stack:
        p = stack.pop()
        out.append(p)
        stack += _children_of(p)
    return out


def _worker_pid(sup: int, decl: str) -> int:
    for pid in _children_of(sup):
        if proc_name(pid) == f"mf:{decl}":
            return pid
    raise AssertionError(f"no worker for {decl}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


CRASH_ONCE = """
@register(inputs=["inp"], outputs=["out"])
class CrashOnce:
    def __init__(self, name, args):
        self.marker = args["marker"]
    def exec(self):
        e = self.inp.recv()
        if e is None:
            return
        if e.msg["i"] == 20 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), 9)
        self.out.send(e)
"""


def test_worker_restarts_when_the_config_asks(tmp_path):
    toml = PIPE_TOML.replace("{n}", "200").replace("{mid}", "CrashOnce").replace("{cloned}", "1")
    toml = toml.replace("{cap}", "4").replace('ty = "CrashOnce"', f'ty = "CrashOnce"\n  restart = 1\n  marker = "{tmp_path}/crashed"')
    app = write_app(tmp_path, "restart", {"restart.toml": toml, "nodes.py": NODES + CRASH_ONCE})
    os.environ["SLOW_SOURCE"] = "1"
    try:
        r = run_cli("run", "-p", app)
    finally:
        os.environ.pop("SLOW_SOURCE")
    assert "restarting it (1 of 1)" in r.stderr and "SIGKILL" in r.stderr
    assert r.returncode == 0, r.stderr
    seen = [m["i"] for m in got(r.stdout)]
    assert seen[:20] == list(range(20)) and seen[-1] == 199  # what was in flight is lost, the rest arrives
    assert "sink done" in r.stdout


def test_exclusive_nodes_run_their_instances_concurrently_on_threads(tmp_path):
    app = dyn_app(tmp_path, """
        @register(inputs=["inp"], exclusive=True)
        class Work:
            def __init__(self, name, args):
                pass
            def exec(self):
                e = self.inp.recv()
                if e is None:
                    return
                start = time.monotonic()
                time.sleep(0.5)  # a blocking call: other instances must go on meanwhile
                # one write per line: print() writes the text and the newline apart, so lines of
                # concurrent threads could interleave
                sys.stdout.write("span " + json.dumps([start, time.monotonic(), threading.get_ident()]) + "\\n")
                sys.stdout.flush()
    """, rounds=1)
    r = run_cli("run", "-p", app)
    assert r.returncode == 0, r.stderr
    spans = [json.loads(line[5:]) for line in r.stdout.splitlines() if line.startswith("span ")]
    assert len(spans) == 4 and len({s[2] for s in spans}) == 4  # one thread per instance
    latest_start, earliest_end = max(s[0] for s in spans), min(s[1] for s in spans)
    assert latest_start < earliest_end, "the blocking calls of the instances did not overlap"


def test_megflow_plugin_idioms_run_unchanged(tmp_path):
    """A shared node that sets the start method itself, untagged envelopes to an "A|B" subgraph
    (the first type is used), ``sleep`` in milliseconds, a resource passed down by a subgraph node;
    the two subgraph types come from one template loop."""
    files = {
        "compat.toml": """
            main = "main"
            [[resources]]
            name = "counter"
            ty = "Count"
            [[nodes]]
            name = "shared"
            ty = "Forking"
            {% for g in ["A", "B"] %}
            [[graphs]]
            name = "{{ g }}"
            inputs = [{ name = "whatever", cap = 16, ports = ["shared:inp"] }]
            connections = [{ cap = 16, ports = ["shared:out", "dest:inp"] }]
                [[graphs.nodes]]
                name = "dest"
                ty = "Dest"
                res = ["counter", "parent"]
            {% endfor %}
            [[graphs]]
            name = "main"
            connections = [
              { cap = 1, ports = ["source:out", "demux:inp"] },
              { cap = 1, ports = ["demux:out", "destination:whatever"] },
            ]
                [[graphs.nodes]]
                name = "source"
                ty = "Source"
                n = 20
                [[graphs.nodes]]
                name = "demux"
                ty = "DynDemux"
                [[graphs.nodes]]
                name = "destination"
                ty = "A|B"
                res = ["parent"]
                [[graphs.resources]]
                name = "parent"
                ty = "Count"
        """,
        "nodes.py": """
            import multiprocessing as mp
            from multiprocessing import Pipe, Process
            from megflow import register, res_register, Envelope, sleep

            def twice(conn):
                while True:
                    msg = conn.recv()
                    if msg is None:
                        break
                    conn.send(msg * 2)

            @res_register()
            class Count:
                def __init__(self, name, args):
                    self.i = 0
                def get(self):
                    self.i += 1
                    return self.i

            @register(outputs=["out"])
            class Source:
                def __init__(self, name, args):
                    self.n = args["n"]
                def exec(self):
                    for i in range(self.n):
                        envelope = Envelope.pack(i)
                        envelope.to_addr = i
                        self.out.send(envelope)
                    sleep(5)
                    for i in range(self.n):
                        envelope = Envelope.pack(None)
                        envelope.to_addr = i
                        self.out.send(envelope)

            @register(inputs=["inp"], outputs=["out"], exclusive=True)
            class Forking:
                def __init__(self, name, args):
                    ours, theirs = Pipe()
                    self.conn = ours
                    mp.set_start_method("fork")  # raises if anyone set it before
                    self.p = Process(target=twice, args=(theirs,))
                    self.p.start()
                def __del__(self):
                    self.conn.send(None)
                    self.p.join()
                    print("child joined", flush=True)
                def exec(self):
                    envelope = self.inp.recv()
                    if envelope is None:
                        return
                    self.conn.send(envelope.msg)
                    self.out.send(envelope.repack(self.conn.recv()))

            @register(inputs=["inp"])
            class Dest:
                def __init__(self, name, args):
                    self.got = []
                def exec(self):
                    envelope = self.inp.recv()
                    if envelope is None:
                        assert len(self.got) == 1 and self.got[0] == 2 * self.addr, self.got
                        print("instance ok", self.addr, flush=True)
                        return
                    self.addr = envelope.to_addr
                    self.counter.get()
                    self.parent.get()
                    self.got.append(envelope.msg)
        """,
    }
    r = run_cli("run", "-p", write_app(tmp_path, "compat", files))
    assert r.returncode == 0, r.stderr
    ok = sorted(int(line.split()[-1]) for line in r.stdout.splitlines() if line.startswith("instance ok"))
    assert ok == list(range(20))
    assert r.stdout.strip().endswith("child joined")


def test_a_node_that_cannot_be_built_stops_the_app_before_it_starts(tmp_path):
    app = pipe_app(tmp_path, n=5)
    (app / "bad.py").write_text("from megflow import register\n\n"
                                "@register(inputs=['inp'], outputs=['out'])\n"
                                "class Bad:\n"
                                "    def __init__(self, name, args):\n"
                                "        raise KeyError('model file missing')\n"
                                "    def exec(self):\n"
                                "        pass\n")
    cfg = app / "pipe.toml"
    cfg.write_text(cfg.read_text().replace('ty = "Transform"', 'ty = "Bad"'))
    r = run_cli("run", "-p", app)
    assert r.returncode == 1
    assert "could not be built" in r.stderr and "KeyError: 'model file missing'" in r.stderr
    assert "'mid'" in r.stderr
    assert "got " not in r.stdout  # nothing ran
    assert r.stderr.count("KeyError: 'model file missing'") == 1
