"""The forker: workers forked from a process without threads, adopted by the supervisor, dying with it.

Each test runs a small supervisor-like script in a process of its own (a child subreaper, as the
cluster supervisor is): it starts a :class:`~megflow_mp.forker.Forker`, then a thread, then forks
a real worker of a two-node app through the forker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.procfs import proc_name, thread_count

SCRIPT = r'''
import json, os, signal, sys, threading, time
from megflow_mp.config import load_config_string
from megflow_mp.forker import Forker, ForkError
from megflow_mp.graph import build_app
from megflow_mp.plan import static_items
from megflow_mp.registry import builtin_registry
from megflow_mp.runtime.transport import listen
from megflow_mp.supervisor import become_subreaper

become_subreaper()
app = build_app(load_config_string("""main = "g"
[[graphs]]
name = "g"
nodes = [{ name = "p", ty = "NoopProducer" }, { name = "c", ty = "NoopConsumer" }]
connections = [{ cap = 4, ports = ["p:out", "c:inp"] }]
"""), builtin_registry())
items, _, _ = static_items(app)
run_id = f"forker-test-{os.getpid()}"
me = listen(run_id, app.nworkers)  # the supervisor's address: the workers report there
forker = Forker(app, run_id, items)
threading.Thread(target=time.sleep, args=(600,), daemon=True).start()  # this process has threads now
pid = forker.fork(0)
try:
    forker.fork(7)
    error = None
except ForkError as exc:
    error = str(exc)
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    if ppid == os.getpid():
        break
    time.sleep(0.01)
print(json.dumps({"worker": pid, "forker": forker.pid, "ppid": ppid, "error": error}), flush=True)
if sys.argv[1] == "reap":
    sys.stdin.readline()  # the test looked at the processes
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)  # a child of this process: its status is ours to read
    forker.close()
    print(json.dumps({"signaled": os.WIFSIGNALED(status), "forker_gone": forker.pid is None}), flush=True)
else:
    time.sleep(600)
'''


def start(mode: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    assert line, f"the script ended early (exit code {proc.wait()})"
    return proc, json.loads(line)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.02)
    return False


def test_a_worker_forked_by_the_forker_is_adopted_and_the_forker_has_no_thread():
    proc, info = start("reap")
    try:
        forker = info["forker"]
        assert info["ppid"] == proc.pid  # adopted by the supervisor, not a child of the forker
        assert proc_name(forker) == "mf-forker"
        assert thread_count(forker) == 1
        assert "cannot start the worker of process 7" in info["error"]
        proc.stdin.write("go\n")
        proc.stdin.flush()
        done = json.loads(proc.stdout.readline())
        assert done == {"signaled": True, "forker_gone": True}
        assert proc.wait(timeout=30) == 0
        assert not alive(forker)
    finally:
        proc.kill()
        proc.wait()


def test_the_worker_and_the_forker_die_with_the_supervisor():
    proc, info = start("stay")
    try:
        assert alive(info["worker"]) and alive(info["forker"])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert wait_gone([info["worker"], info["forker"]])
    finally:
        proc.kill()
        proc.wait()
