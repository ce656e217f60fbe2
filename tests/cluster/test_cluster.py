"""Apps on a real Ray cluster (several raylets on this machine): ``megflow-mp run CONFIG --ray ADDRESS``.

Checked: frames cross machines intact and in order, each node runs where its ``placement`` says (by
Ray's node id of the actor that started its host, and by process ancestry), the bundled self-check
passes with its shared node on another machine, replicas spread and senders prefer the replica on
their own machine, an impossible placement is one clear error, and a machine lost mid-run ends the
app with a line naming it, with no process of the app left anywhere.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from megflow_mp.forker import TITLE as FORKER
from megflow_mp.selfcheck import LOGICAL_TEST
from megflow_mp.supervisor import children_of
from tests.cluster.conftest import MEGFLOW, PLUGINS, app_processes, node_ids, remote_worker, run_app, start_app
from tests.support.procfs import proc_name, thread_count

HOST = "megflow_mp.cluster.host"


def chain(tmp_path: Path, n: int, stamp: str, *, height=720, width=1280, cap=16, extra="", shared=False) -> Path:
    """source -> stamp -> check; ``stamp`` is the stamp node's extra TOML (its placement); ``shared``
    declares the stamp node at top level (a shared node) instead of in the graph."""
    report = tmp_path / "report.json"
    stamp_decl = f'name = "stamp"\nty = "Stamp"\n{stamp}\n'
    top = f"[[nodes]]\n{stamp_decl}" if shared else ""
    inner = "" if shared else "    [[graphs.nodes]]\n    " + stamp_decl.replace("\n", "\n    ")
    text = f"""main = "main"
{top}
[[graphs]]
name = "main"
connections = [
    {{ cap = {cap}, ports = ["source:out", "stamp:inp"] }},
    {{ cap = {cap}, ports = ["stamp:out", "check:inp"] }},
]
    [[graphs.nodes]]
    name = "source"
    ty = "FrameSource"
    n = {n}
    height = {height}
    width = {width}
    {extra}
{inner}
    [[graphs.nodes]]
    name = "check"
    ty = "FrameCheck"
    report = "{report}"
"""
    config = tmp_path / "chain.toml"
    config.write_text(text)
    return config


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_frames_cross_machines_intact_and_placed_where_asked(ray_cluster, tmp_path):
    ids = node_ids(ray_cluster)
    config = chain(tmp_path, 40, 'placement = { num_cpus = 1, resources = { site_b = 1 } }')
    r = run_app(config, ray_cluster.address)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["count"] == 40 and report["bad"] == 0 and report["order"] == list(range(40))
    (path,) = report["paths"]  # one replica, so one path
    (stamp,) = path
    assert stamp["node"] == ids["b"]  # Ray's node id, as the actor that started its host saw it
    assert re.search(r"machine 1 \(.*Ray node " + ids["b"][:8] + r"\): main/stamp#0", r.stderr), r.stderr[-2000:]
    assert re.search(r"machine 0 \(.*Ray node " + ids["head"][:8] + r"\): main/source#0, main/check#0", r.stderr)
    assert not app_processes(str(config)) and not app_processes(HOST)


def test_stamp_ancestry_is_the_host_started_by_the_ray_actor(ray_cluster, tmp_path):
    """The placed worker's parent is the host process, whose parent is the Ray actor (its title
    is Ray's ``ray::HostAgent``): the worker really runs under that raylet's actor. On both
    machines the workers were forked by a forker without threads (the supervisor has Ray's) and
    adopted by the supervisor or host."""
    config = chain(tmp_path, 400, 'placement = { resources = { site_b = 1 } }', height=90, width=160,
                   extra="interval = 0.02")
    log = tmp_path / "stderr.txt"
    proc = start_app(config, ray_cluster.address, log)
    try:
        host_pid, worker_pid = remote_worker(proc, log)
        actor_pid = int(Path(f"/proc/{host_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert HOST in cmdline(worker_pid)  # forked by the host
        assert cmdline(actor_pid).startswith("ray::HostAgent"), cmdline(actor_pid)
        for parent, workers in ((proc.pid, {"mf:source", "mf:check"}), (host_pid, {"mf:stamp"})):
            kids = children_of(parent)
            names = [proc_name(k) for k in kids]
            assert sorted(names) == sorted([FORKER, *workers]), (parent, names)
            assert thread_count(kids[names.index(FORKER)]) == 1
        assert thread_count(proc.pid) > 1  # Ray's threads: why workers are not forked here
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    err = log.read_text()
    assert proc.returncode == 0, err[-3000:]
    assert not app_processes(str(config)) and not app_processes(HOST)


def test_selfcheck_with_its_shared_node_on_another_machine(ray_cluster, tmp_path):
    text = (LOGICAL_TEST / "logical_test.toml").read_text()
    text = text.replace("times = 10\n", "times = 10\nplacement = { resources = { site_b = 1 } }\n", 1)
    config = tmp_path / "logical_test.toml"
    config.write_text(text)
    r = subprocess.run([MEGFLOW, "run", str(config), "-p", str(LOGICAL_TEST), "--ray", ray_cluster.address],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "logical_test pass" in r.stdout
    assert re.search(r"machine 1 \(.*\): @/shared#0", r.stderr)


def test_replicas_spread_and_senders_prefer_their_own_machine(ray_cluster, tmp_path):
    """Two replicas of a shared node, each needing a CPU: one per machine (SPREAD). Ten frames with a
    window of 16: the local replica always has credit, so every frame stays on machine 0 (without
    the preference the most-credit rule alternates between the two)."""
    ids = node_ids(ray_cluster)
    config = chain(tmp_path, 10, "cloned = 2\nplacement = { num_cpus = 1 }", shared=True, height=90, width=160)
    r = run_app(config, ray_cluster.address)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"machine 0 \(.*\): .*@/stamp#[01]", r.stderr) and re.search(r"machine 1 \(.*\): @/stamp#[01]",
                                                                                     r.stderr), r.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["count"] == 10 and report["bad"] == 0
    assert {p[0]["node"] for p in report["paths"]} == {ids["head"]}


def test_dyndemux_replicas_spread_their_instances_over_the_machines(ray_cluster, tmp_path):
    """DynDemux and its per-address node, ``cloned = 2`` and unplaced: dealt over both machines; each
    address stays on one DynDemux replica and its instance on that replica's machine."""
    ids = node_ids(ray_cluster)
    report = tmp_path / "report"
    report.mkdir()
    config = tmp_path / "dyn.toml"
    config.write_text(f"""main = "main"
[[graphs]]
name = "sub"
inputs = [{{ name = "inp", cap = 16, ports = ["tally:inp"] }}]
    [[graphs.nodes]]
    name = "tally"
    ty = "AddrTally"
    cloned = 2
    report = "{report}"
[[graphs]]
name = "main"
connections = [{{ cap = 16, ports = ["src:out", "demux:inp"] }}, {{ cap = 16, ports = ["demux:out", "sub:inp"] }}]
    [[graphs.nodes]]
    name = "src"
    ty = "AddrSource"
    n = 400
    addrs = 4
    [[graphs.nodes]]
    name = "demux"
    ty = "DynDemux"
    cloned = 2
    [[graphs.nodes]]
    name = "sub"
    ty = "sub"
""")
    r = run_app(config, ray_cluster.address)
    assert r.returncode == 0, r.stderr[-3000:]
    got = sorted((json.loads(p.read_text()) for p in report.glob("*.json")), key=lambda x: x["addr"])
    assert [(x["addr"], x["count"]) for x in got] == [(a, 100) for a in range(4)]  # one instance each, all of it
    nodes = [x["node"] for x in got]
    assert sorted(nodes) == sorted([ids["head"], ids["head"], ids["b"], ids["b"]]), got  # two addresses a machine


def test_an_address_where_no_cluster_listens_is_one_clear_error_at_once(tmp_path):
    """Ray itself retries such an address for minutes; the run says at once what is wrong, and
    leaves no process (its forker included)."""
    from tests.integration.conftest import free_port

    config = chain(tmp_path, 10, "")
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    r = subprocess.run([MEGFLOW, "run", str(config), "-p", str(PLUGINS), "--ray", address, "--no-metrics"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr[-3000:]
    assert f"cannot reach the Ray cluster at '{address}': Connection refused" in r.stderr
    assert time.monotonic() - started < 30
    assert not app_processes(str(config))


def test_a_placement_no_machine_has_is_one_clear_error(ray_cluster, tmp_path):
    config = chain(tmp_path, 5, 'placement = { resources = { site_z = 2 } }')
    started = time.monotonic()
    r = run_app(config, ray_cluster.address, timeout=60)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert lines and "node 'stamp' (main/stamp) needs {site_z: 2} per replica and no machine of the cluster " \
                     "has that" in lines[-1], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert time.monotonic() - started < 30
    assert not app_processes(str(config)) and not app_processes(HOST)


def test_a_placement_the_cluster_cannot_give_now_is_waited_for_then_an_error(ray_cluster, tmp_path):
    """Three replicas of 2 CPUs on two machines of 2 CPUs: a bigger cluster could, this one cannot now."""
    config = chain(tmp_path, 5, "cloned = 3\nplacement = { num_cpus = 2 }", shared=True)
    r = run_app(config, ray_cluster.address, "--ray-wait", "3", timeout=120)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "waiting up to 3 s for the resources of node 'stamp' (@/stamp): {CPU: 2} per replica, 3 replicas" in r.stderr
    assert re.search(r"error: node 'stamp' \(@/stamp\) could not be placed within 3 s: 3 replicas of \{CPU: 2\} are "
                     r"not free on the cluster \(available now: \{CPU: [0-9]+", r.stderr), r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not app_processes(str(config)) and not app_processes(HOST)


def test_a_machine_lost_mid_run_ends_the_app_naming_it(ray_cluster, tmp_path):
    c = ray_cluster.add_node(num_cpus=1, resources={"site_c": 1})
    ray_cluster.wait_for_nodes()
    config = chain(tmp_path, 100000, 'placement = { resources = { site_c = 1 } }', height=90, width=160,
                   extra="interval = 0.01")
    log = tmp_path / "stderr.txt"
    proc = start_app(config, ray_cluster.address, log)
    try:
        remote_worker(proc, log)
        time.sleep(2.0)  # frames are flowing through machine 1
        ray_cluster.remove_node(c, allow_graceful=False)  # its raylet and every process of it killed
        lost = time.monotonic()
        proc.wait(timeout=60)
        took = time.monotonic() - lost
    finally:
        if proc.poll() is None:
            proc.kill()
    err = log.read_text()
    assert proc.returncode == 1, err[-3000:]
    assert re.search(r"error: machine 1 \(.*\) was lost .*its nodes ended: 'stamp' \(main/stamp\)", err), err[-3000:]
    assert took < 30
    assert not app_processes(str(config)) and not app_processes(HOST)


def test_a_killed_worker_on_another_machine_is_restarted_there(ray_cluster, tmp_path):
    """``restart = 1`` on a node of machine b: its worker SIGKILLed mid-run is started again by that
    machine's host, the app goes on to its end (what the worker held in flight is lost)."""
    ids = node_ids(ray_cluster)
    config = chain(tmp_path, 300, 'restart = 1\nplacement = { resources = { site_b = 1 } }', height=90, width=160,
                   extra="interval = 0.01")
    log = tmp_path / "stderr.txt"
    proc = start_app(config, ray_cluster.address, log)
    try:
        _, worker = remote_worker(proc, log)
        time.sleep(1.0)
        os.kill(worker, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = log.read_text()
    assert proc.returncode == 0, err[-3000:]
    assert re.search(r"worker of node 'stamp' \(main/stamp, replica 0, pid None, on machine 1 .*\) was killed by "
                     r"SIGKILL; restarting it \(1 of 1\)", err), err[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["bad"] == 0 and 200 < report["count"] <= 300
    assert {p[0]["node"] for p in report["paths"]} == {ids["b"]}
    assert len({p[0]["pid"] for p in report["paths"]}) == 2  # the first worker, then the restarted one
    assert not app_processes(str(config)) and not app_processes(HOST)
