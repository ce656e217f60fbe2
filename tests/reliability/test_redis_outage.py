"""Nothing lost when redis is down: electric_bicycle's alerts and cat_finder's registrations and
notifications go through the plugins' disk spool (megflow_mp.spool) while a real redis-server is
killed and started again, and while the writing process itself is SIGKILLed and started again.

Every write a process acknowledged (spooled) must reach redis exactly once and in order; a write cut
short by a SIGKILL may or may not arrive, but never twice. redis runs with an fsync'd append-only
file on a kept directory, so a killed server comes back with everything it acknowledged.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from tests.reliability.servers import ROOT, cli_env
from tests.support.redis import RedisServer, RedisUnavailable, redis_server_binary

SECTION = "Redis down: nothing lost (real redis-server killed; the writing process SIGKILLed)"


@pytest.fixture(scope="module", autouse=True)
def redis_binary():
    try:
        redis_server_binary()
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


class Client:
    """One spool_client process; its ``acked`` numbers are read by a thread."""

    def __init__(self, kind: str, port: int, spool, first: int, count: int, interval: float):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.spool_client", kind, str(port),
                                      str(spool), str(first), str(count), str(interval)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, cwd=ROOT, env=cli_env())
        self.first, self.acked, self.done = first, [], threading.Event()
        self.started = first  # the numbers it may have written: first .. started
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("acked "):
                self.acked.append(int(line.split()[1]))
            elif line.strip() == "done":
                self.done.set()
        self.done.set()

    def wait_acked(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n and not self.done.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acked) >= n, f"the client acknowledged {len(self.acked)} of {n} writes"

    def wait_done(self, timeout: float = 300) -> None:
        assert self.done.wait(timeout), f"the client did not finish ({len(self.acked)} acknowledged)"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._thread.join(10)
        self.proc.stdout.close()
        self.proc.stdin.close()

    def end(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)
        self._thread.join(10)
        self.proc.stdout.close()


def delivered(r, kind: str) -> list[int]:
    key = "eb.alerts" if kind == "alerts" else "notification.cat_finder"
    return [int(v.split("-")[1]) for v in r.lrange(key, 0, -1)]


@pytest.mark.parametrize("kind", ["alerts", "cats"])
def test_writes_survive_redis_and_app_kills_exactly_once(tmp_path, kind, sizes, figures):
    n = sizes.outage_writes
    third = max(1, n // 3)
    data, spool = tmp_path / "redis-data", tmp_path / "spool"
    data.mkdir()
    server = RedisServer(data_dir=data)
    port = server.port
    clients, figures_notes = [], []
    try:
        # 1. redis SIGKILLed mid-run and started again, while one process writes
        c1 = Client(kind, port, spool, 0, n, 0.004)
        clients.append(c1)
        c1.wait_acked(third)
        server.kill()
        c1.wait_acked(2 * third)
        server = RedisServer(port=port, data_dir=data)
        back = time.monotonic()
        c1.wait_done()
        while set(c1.acked) - set(delivered(server.client(), kind)) and time.monotonic() - back < 60:
            time.sleep(0.02)
        figures_notes.append(f"redis killed mid-run: all {len(c1.acked)} writes in redis "
                             f"{time.monotonic() - back:.2f} s after it was back")
        # 2. redis down; the writing processes SIGKILLed (one idle, one mid-write), then started again
        server.kill()
        c2 = Client(kind, port, spool, n, third, 0.004)
        clients.append(c2)
        c2.wait_done()
        c1.kill()
        c2.kill()
        c3 = Client(kind, port, spool, n + third, third, 0.004)
        clients.append(c3)
        c3.wait_acked(third // 2)
        c3.kill()  # mid-write: its last write may or may not have been spooled
        c4 = Client(kind, port, spool, n + 2 * third, 1, 0.0)  # a new run of the app, while redis is down
        clients.append(c4)
        c4.wait_done()
        server = RedisServer(port=port, data_dir=data)
        back = time.monotonic()
        acked = sorted(i for c in clients for i in c.acked)
        r = server.client()
        while set(acked) - set(delivered(r, kind)) and time.monotonic() - back < 60:
            time.sleep(0.02)
        figures_notes.append(f"writes spooled by {len(clients)} runs (3 SIGKILLed) while redis was down: in redis "
                             f"{time.monotonic() - back:.2f} s after it was back")
        time.sleep(0.5)  # anything delivered twice would be there by now
        got = delivered(r, kind)
        may = set(acked) | {c3.first + len(c3.acked)}  # the write in progress when c3 was killed
        missing = sorted(set(acked) - set(got))
        twice = sorted({i for i in got if got.count(i) > 1})
        unknown = sorted(set(got) - may)
        out_of_order = sum(1 for a, b in zip(got, got[1:]) if b <= a)
        registered_missing = []
        if kind == "cats":
            registered = {k.split(".", 1)[1] for k in r.keys("feature.*")}
            registered_missing = [i for i in acked if f"cat-{i}" not in registered]
        c4.end()
        left_in_spool = sum(1 for _ in spool.rglob("*.entry"))
    finally:
        for c in clients:
            if c.proc.poll() is None:
                c.kill()
        server.kill()
    lost = len(missing) + len(twice) + len(unknown) + len(registered_missing)
    what = ("electric_bicycle alerts (RedisList)" if kind == "alerts"
            else "cat_finder registrations and notifications (FeatureStore)")
    row = figures.add(SECTION, f"{what}: redis SIGKILLed mid-run and restarted; 4 runs of the writer, 3 SIGKILLed "
                      "while redis was down: every acknowledged write in redis exactly once", len(acked),
                      len(acked) - len(missing) - len(registered_missing), lost,
                      figures_notes + [f"missing {missing[:5]}, twice {twice[:5]}, unknown {unknown[:5]}, "
                                       f"registrations missing {registered_missing[:5]}, out of order "
                                       f"{out_of_order}, left in the spool {left_in_spool}"])
    assert row.lost == 0 and out_of_order == 0 and left_in_spool == 0, row.notes



@pytest.mark.parametrize("kind", ["alerts", "cats"])
def test_a_write_delivered_but_still_spooled_is_not_written_twice(tmp_path, kind):
    """A process killed after redis took a write and before the spool forgot it sends it again at the
    next start: redis keeps one copy (the delivered ids)."""
    sys.path.insert(0, str(ROOT / "plugins"))
    from cat_finder.features import FeatureStore
    from electric_bicycle.redis_list import RedisList

    with RedisServer() as server:
        spool = tmp_path / "spool"
        if kind == "alerts":
            target = RedisList("eb.alerts", port=server.port, spool=spool)
            target.push("alert-1")
            ids_key, text = "eb.alerts.delivered", "alert-1"
        else:
            target = FeatureStore(port=server.port, spool=spool, kind="save")
            target.notify("note-1")
            ids_key, text = "notification.cat_finder.delivered", \
                '{"op": "rpush", "key": "notification.cat_finder", "value": "note-1"}'
        r = server.client()
        assert delivered(r, kind) == [1] and len(target.spool) == 0
        (sent_id,) = r.smembers(ids_key)
        (target.spool.dir / f"{sent_id}.entry").write_text(text)  # as if its removal never happened
        target.flush()
        assert delivered(r, kind) == [1] and len(target.spool) == 0
        target.close()
