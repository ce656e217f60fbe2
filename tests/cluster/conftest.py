"""A real Ray cluster for the cluster tests: separate raylets (each with its own object store and
resources) on this machine, started once per test module with ``ray.cluster_utils.Cluster`` (and
shut down after it: its processes are children of the test process, which later tests count).

Machines: the head (2 CPUs; the driver's, so machine 0 of every run) and ``b`` (2 CPUs and the
custom resource ``site_b``). Tests that kill a machine add their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from megflow_mp.forker import TITLE as FORKER
from megflow_mp.supervisor import children_of
from tests.support.procfs import proc_name

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = Path(__file__).resolve().parent / "plugins"
MEGFLOW = str(Path(sys.executable).with_name("megflow-mp"))


@pytest.fixture(scope="module")
def ray_cluster():
    from tests.support.cluster import local_cluster

    with local_cluster(2, ({"num_cpus": 2, "resources": {"site_b": 1}},)) as cluster:
        cluster.b = cluster.workers[0]
        yield cluster


def node_ids(cluster) -> dict[str, str]:
    """``{"head": id, "b": id}`` of the session's cluster."""
    return {"head": cluster.head_node.node_id, "b": cluster.b.node_id}


def run_app(config: Path, address: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``megflow-mp run CONFIG --ray ADDRESS [ARGS]`` (plugins: tests/cluster/plugins), as a user runs it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([MEGFLOW, "run", str(config), "-p", str(PLUGINS), "--ray", address, "--no-metrics", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def app_processes(marker: str) -> list[str]:
    """Command lines of live processes that belong to a cluster run (hosts, workers) and name ``marker``."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            out.append(f"{pid}: {cmd}")
    return out


def start_app(config: Path, address: str, log: Path, plugins: Path = PLUGINS) -> subprocess.Popen:
    """``megflow-mp run CONFIG --ray ADDRESS`` in the background, its stderr to ``log`` (a file: an
    unread pipe could fill and stop the app); stdout discarded."""
    with open(log, "w") as err:
        return subprocess.Popen([MEGFLOW, "run", str(config), "-p", str(plugins), "--ray", address, "--no-metrics"],
                                stdout=subprocess.DEVNULL, stderr=err, text=True)


def host_tree() -> dict[int, list[int]]:
    """Host pid -> its children but its forker (the workers of its machine; forked from the host,
    they have its command line too), for every host process of a cluster run on this machine."""
    pids = [int(line.split(":", 1)[0]) for line in app_processes("megflow_mp.cluster.host")]
    out = {}
    for pid in pids:
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid not in pids:
                out[pid] = sorted(k for k in children_of(pid) if proc_name(k) != FORKER)
        except OSError:
            pass
    return out


def remote_worker(proc: subprocess.Popen, log: Path, timeout: float = 60) -> tuple[int, int]:
    """``(host pid, worker pid)``: the first worker a host process of this machine forked, once the
    app ``proc`` has started on every machine (it logged its layout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if "INFO machine 0 (" in log.read_text():
            for host, workers in host_tree().items():
                if workers:
                    return host, workers[0]
        time.sleep(0.05)
    raise AssertionError(f"no worker on another machine appeared: {log.read_text()[-3000:]}")
