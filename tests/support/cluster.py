"""Ray clusters and placed configs for the cluster tests and benchmarks.

:func:`local_cluster` starts real, separate raylets on this machine (``ray.cluster_utils.Cluster``:
each with its own object store and resources) and shuts them down; :func:`placed` adds lines (a
``placement``, ``cloned``) to one node's entry of a config's text, so a shipped config runs on a
cluster unchanged but for where its nodes go.
"""

from __future__ import annotations

import contextlib
import re


@contextlib.contextmanager
def local_cluster(head_cpus: int = 2, nodes: tuple[dict, ...] = (), head_resources: dict | None = None):
    """A Ray cluster: the head (``head_cpus`` CPUs, custom ``head_resources``, no dashboard) plus one
    raylet per entry of ``nodes`` (``Cluster.add_node`` arguments, e.g. ``{"num_cpus": 2,
    "resources": {"site_b": 1}}``). Yields the ``Cluster``; ``workers`` lists the added nodes in order."""
    from ray.cluster_utils import Cluster

    head = {"num_cpus": head_cpus, "include_dashboard": False, "resources": dict(head_resources or {})}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        cluster.workers = [cluster.add_node(**kw) for kw in nodes]
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def placed(text: str, node: str, *lines: str) -> str:
    """``text`` with ``lines`` added to the entry of node ``node`` (after its ``name = ...`` line,
    at its indentation). Raises ValueError when the config has no such node."""
    m = re.search(rf'^([ \t]*)name = "{re.escape(node)}"[ \t]*(#.*)?$', text, flags=re.M)
    if m is None:
        raise ValueError(f"no node named {node!r} in the config")
    indent = m.group(1)
    added = "".join(f"\n{indent}{line}" for line in lines)
    return text[: m.end()] + added + text[m.end():]
