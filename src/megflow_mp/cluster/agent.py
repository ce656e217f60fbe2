"""The Ray actor on each machine of a cluster run: starts that machine's host process and stops it.

One :class:`HostAgent` per machine other than the driver's, pinned to its Ray node
(``NodeAffinitySchedulingStrategy``, not soft) and reserving nothing itself (the workers' resources
are reserved by the placement groups, :mod:`.placement`). Ray owns its lifetime: when the actor
dies (``ray.kill``, its raylet lost, the driver gone) its host dies with it (PDEATHSIG) and the
host's workers with the host, so nothing of the app outlives the run on any machine.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

from ..errors import ClusterError

NODE_ENV = "MEGFLOW_MP_RAY_NODE"  # in every worker of a cluster run: the Ray node id of its machine


class HostAgent:
    """Plain class; :func:`remote_agent` makes it a Ray actor (Ray is imported only for ``--ray``)."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None

    def node(self) -> tuple[str, str, int]:
        """``(Ray node id, node ip, pid)`` of this actor."""
        import ray

        return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address(), os.getpid()

    def start(self, spec) -> tuple[str, int]:
        """Start the host with ``spec`` (a HostSpec with ``parent`` and ``ip`` to fill in); returns
        its bridge's ``(ip, port)``. Raises ClusterError with the host's own message when it cannot."""
        import ray

        spec.parent, spec.ip = os.getpid(), ray.util.get_node_ip_address()
        env = dict(os.environ, **{NODE_ENV: ray.get_runtime_context().get_node_id()})
        # the host answers on a pipe of its own; its stdout and stderr (and its workers') are this
        # actor's, which Ray shows on the driver's console
        answer_r, answer_w = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-m", "megflow_mp.cluster.host", str(answer_w)],
                                     stdin=subprocess.PIPE, pass_fds=(answer_w,), env=env)
        os.close(answer_w)
        self.answers = os.fdopen(answer_r, "rb")
        self.proc.stdin.write(pickle.dumps(spec, protocol=5))
        self.proc.stdin.flush()
        line = self.answers.readline().decode().strip()
        if not line.startswith("LISTEN "):
            self.proc.wait(timeout=30)
            raise ClusterError(line[len("ERROR "):] if line.startswith("ERROR ") else
                               f"the host of machine {spec.me} ended before it listened (exit code "
                               f"{self.proc.returncode}; its log is in this actor's stderr)")
        _, ip, port = line.split()
        return ip, int(port)

    def connect(self, addresses: dict) -> None:
        """Tell the host every bridge's address (it opens its links and runs)."""
        import json

        self.proc.stdin.write((json.dumps({str(k): list(v) for k, v in addresses.items()}) + "\n").encode())
        self.proc.stdin.flush()

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the host (it stops its workers first); returns its exit code."""
        if self.proc is None:
            return None
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def remote_agent(node_id: str):
    """A new HostAgent actor on Ray node ``node_id``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=2)(HostAgent)
    return actor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
