"""Which machine runs which worker process: the app's ``placement`` tables turned into Ray placement groups.

Machine 0 is the driver's (where ``megflow-mp run`` runs; the supervisor and the front doors live
there); the other machines that run part of the app are numbered from 1 (by address, then node id). Rules, per node declaration:

* ``placement = { num_cpus, num_gpus, resources }``: one Ray placement group per declaration, one
  bundle per replica, strategy ``SPREAD`` (replicas go to different machines when the resources allow
  it). Ray reserves the bundles for the whole run, so two apps never overbook a machine, and Ray
  decides where each replica goes. A demand that no single alive machine could ever give is an error
  at once; one that the cluster could give but cannot now waits (a message names the node and the
  missing resources) up to ``timeout`` seconds, then is an error.
* no placement: machine 0 for a node with one replica; the replicas of a node with ``cloned > 1``
  are dealt round-robin over every alive machine, machine 0 first (a shared model spreads with the
  cluster; a VideoServer's stream runners and a per-stream node's replicas too, so that streams
  run on every machine: see :meth:`InstancePlan.procs_of <megflow_mp.plan.InstancePlan.procs_of>`).

:func:`layout` is the pure part (tested without Ray); :class:`Placement` asks Ray.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..errors import ClusterError

log = logging.getLogger("megflow_mp")


@dataclass
class Machine:
    """One Ray node that runs part of the app."""

    node_id: str
    ip: str
    resources: dict = field(default_factory=dict)

    def describe(self, index: int) -> str:
        return f"machine {index} ({self.ip}, Ray node {self.node_id[:8]})"


def demand(placement) -> dict[str, float]:
    """A ``placement`` table as a Ray bundle: ``{"CPU": .., "GPU": .., name: amount}``, zeros left out."""
    out = {}
    if placement.get("num_cpus"):
        out["CPU"] = float(placement["num_cpus"])
    if placement.get("num_gpus"):
        out["GPU"] = float(placement["num_gpus"])
    for name, amount in (placement.get("resources") or {}).items():
        out[name] = float(amount)
    return out


def fits(bundle: dict, resources: dict) -> bool:
    return all(resources.get(k, 0.0) >= v for k, v in bundle.items())


def layout(app, machines: list[Machine], placed: dict[str, list[str]]) -> dict[int, int]:
    """Process index -> machine index (``machines[0]`` is the driver's). ``placed`` gives, per node
    declaration with a placement, the Ray node id of each replica (from its placement group). The
    supervisor (process ``app.nworkers``) is on machine 0. Machines not named yet by ``placed`` are
    not used."""
    index = {m.node_id: i for i, m in enumerate(machines)}
    where: dict[int, int] = {app.nworkers: 0}
    for key, procs in app.decl_procs.items():
        decl = app.decls[key]
        for r, proc in enumerate(procs):
            if key in placed:
                where[proc] = index[placed[key][r]]
            elif decl.cloned > 1:
                where[proc] = r % len(machines)
            else:
                where[proc] = 0
    return where


class Placement:
    """The layout of one app on a Ray cluster (Ray must be initialised). Holds the placement groups
    until :meth:`release`."""

    def __init__(self, app, timeout: float = 60.0):
        import ray
        from ray.util.placement_group import placement_group, placement_group_table

        self.app = app
        self.groups = []
        alive = [n for n in ray.nodes() if n.get("Alive")]
        driver = ray.get_runtime_context().get_node_id()
        alive.sort(key=lambda n: (n["NodeID"] != driver, n["NodeManagerAddress"], n["NodeID"]))
        self.machines = [Machine(n["NodeID"], n["NodeManagerAddress"], dict(n.get("Resources", {}))) for n in alive]
        placed: dict[str, list[str]] = {}
        try:
            for key, decl in app.decls.items():
                bundle = demand(getattr(decl, "placement", {}) or {})
                if not bundle:
                    continue
                self.check_possible(key, decl, bundle)
                group = placement_group([dict(bundle) for _ in range(decl.cloned)], strategy="SPREAD",
                                        name=f"megflow-mp:{key}")
                self.groups.append(group)
                self.wait_ready(group, key, decl, bundle, timeout)
                table = placement_group_table(group)
                placed[key] = [table["bundles_to_node_id"][i] for i in range(decl.cloned)]
        except BaseException:
            self.release()
            raise
        where = layout(app, self.machines, placed)
        # machines that run part of the app first, numbered in that order (0: the driver's)
        used = sorted(set(where.values()))
        order = used + [i for i in range(len(self.machines)) if i not in used]
        self.machines = [self.machines[i] for i in order]
        self.where = {p: order.index(m) for p, m in where.items()}
        self.used = list(range(len(used)))  # machine indices that run a process of the app

    def check_possible(self, key: str, decl, bundle: dict) -> None:
        if any(fits(bundle, m.resources) for m in self.machines):
            return
        have = "; ".join(f"{m.describe(i)}: {_resources(m.resources)}" for i, m in enumerate(self.machines))
        raise ClusterError(f"node '{decl.name}' ({key}) needs {_resources(bundle)} per replica and no machine of "
                           f"the cluster has that ({have})")

    def wait_ready(self, group, key: str, decl, bundle: dict, timeout: float) -> None:
        import ray

        started = time.monotonic()
        try:
            ray.get(group.ready(), timeout=min(2.0, timeout))
            return
        except ray.exceptions.GetTimeoutError:
            pass
        log.warning("waiting up to %.0f s for the resources of node '%s' (%s): %s per replica, %d replicas",
                    timeout, decl.name, key, _resources(bundle), decl.cloned)
        try:
            ray.get(group.ready(), timeout=max(0.1, timeout - (time.monotonic() - started)))
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(f"node '{decl.name}' ({key}) could not be placed within {timeout:g} s: "
                               f"{decl.cloned} replicas of {_resources(bundle)} are not free on the cluster "
                               f"(available now: {_resources(ray.available_resources())})") from None

    def release(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for group in self.groups:
            try:
                remove_placement_group(group)
            except Exception:  # noqa: BLE001 - the cluster may be gone already
                pass
        self.groups.clear()


def _resources(res: dict) -> str:
    shown = {k: v for k, v in res.items()
             if not k.startswith("node:") and "memory" not in k and "_group_" not in k}  # Ray's own entries
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shown.items())) + "}"
