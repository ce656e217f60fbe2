"""How many cases each reliability scenario runs: ``small`` in ``make test``, ``full`` in ``make chaos``.

The size comes from ``MEGFLOW_MP_RELIABILITY`` (``small`` when unset); ``MEGFLOW_MP_RELIABILITY_SCALE``
multiplies every count of the chosen size (``0.1`` for a quick look at the full scenarios).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Size:
    http_requests: int  # schemathesis requests per front door
    config_cases: int  # mutated configs checked in-process
    config_subprocess: int  # mutated configs checked by a real `megflow-mp check` process
    slow_clients: int  # slowloris sockets held open at once
    hostile_rounds: int  # rounds of the hand-written hostile requests
    outage_writes: int  # alerts (and cat registrations + notifications) written across redis outages
    kills: int  # rounds of SIGKILLs of each kind of process under load
    overload_clients: int  # concurrent clients against a small-capacity service
    churn_cycles: int  # stream start/stop cycles
    cameras: int  # RTSP cameras at once (one of them bad)
    corrupt_packets: int  # RTP packets of a camera damaged by the proxy (one in 20)


SIZES = {
    "small": Size(http_requests=120, config_cases=250, config_subprocess=2, slow_clients=16, hostile_rounds=1,
                  outage_writes=60, kills=1, overload_clients=200, churn_cycles=200, cameras=4,
                  corrupt_packets=5),
    "full": Size(http_requests=10_000, config_cases=10_000, config_subprocess=20, slow_clients=256, hostile_rounds=20,
                 outage_writes=1000, kills=2, overload_clients=1000, churn_cycles=1000, cameras=16,
                 corrupt_packets=60),
}

SIZE = os.environ.get("MEGFLOW_MP_RELIABILITY", "small")
if SIZE not in SIZES:
    raise ValueError(f"MEGFLOW_MP_RELIABILITY must be one of {', '.join(SIZES)}, not {SIZE!r}")


def size() -> Size:
    base = SIZES[SIZE]
    scale = float(os.environ.get("MEGFLOW_MP_RELIABILITY_SCALE", "1"))
    return Size(**{f.name: max(1, round(getattr(base, f.name) * scale)) for f in fields(Size)})
