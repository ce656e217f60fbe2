"""A process that writes to redis the way the apps' plugins do, for the redis outage tests.

    python -m tests.reliability.spool_client alerts|cats PORT SPOOL_DIR FIRST COUNT INTERVAL

``alerts``: electric_bicycle's RedisList pushes ``alert-<i>`` to the list ``eb.alerts``.
``cats``: cat_finder's FeatureStore registers ``cat-<i>`` (key ``feature.cat-<i>``) and pushes the
notification ``note-<i>`` to ``notification.cat_finder``.
For i in FIRST..FIRST+COUNT-1, one every INTERVAL seconds; ``acked <i>`` is printed once the write
is spooled (on disk) and ``done`` after the last one. The process then stays, its retry thread
delivering, until it is killed or its stdin closes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    kind, port, spool, first, count, interval = sys.argv[1:7]
    port, first, count, interval = int(port), int(first), int(count), float(interval)
    if kind == "alerts":
        sys.path.insert(0, str(ROOT / "plugins"))
        from electric_bicycle.redis_list import RedisList
        target = RedisList("eb.alerts", port=port, backlog=100_000, retry_interval=0.1, connect_timeout=0.5,
                           timeout=1.0, spool=spool)
        target.check()

        def write(i: int) -> None:
            target.push(f"alert-{i}")
    else:
        sys.path.insert(0, str(ROOT / "plugins"))
        import numpy as np
        from cat_finder.features import FeatureStore, StoreError
        target = FeatureStore(port=port, timeout=0.5, spool=spool, kind="save", backlog=100_000, retry_interval=0.1)

        def write(i: int) -> None:
            for call in (lambda: target.save(f"cat-{i}", np.full(4, i, np.float32)),
                         lambda: target.notify(f"note-{i}")):
                try:
                    call()
                except StoreError:
                    pass  # spooled: the retry thread writes it
    for i in range(first, first + count):
        write(i)
        print(f"acked {i}", flush=True)
        time.sleep(interval)
    print("done", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
