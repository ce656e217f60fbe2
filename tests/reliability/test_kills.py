"""Killed processes under load: SIGKILL, one at a time, of the front door's worker, the VideoServer's
(decoding) worker, a replica of a shared node, a per-stream node's worker and the supervisor, while 4
file streams play on a VideoServer app and 16 clients post images to an ImageServer app.

With ``restart = 3``: the time until the service answers again (HTTP) or the streams' frame counts
move again is measured and reported (the target is <= 2 s); every request in flight gets an answer
(any status) or, when the front door itself was killed, a closed connection; none hangs. With
``restart = 0`` (these apps have a front door: without it, a killed worker would be started again by
the default policy, megflow_mp.restarts): the app ends with an error naming the node. Afterwards no process is left and nothing in
/dev/shm (counted).

The requests in flight when the front door's worker is SIGKILLed cannot be answered: that worker
binds the listening socket and accepts every connection, and no other process of the app holds
either (the test looks, in /proc, just before the kill), so the kernel closes them all with it.
Their own row says so with what was seen: how many were in flight, answered, closed, hung.
"""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
import urllib.parse
from pathlib import Path

import requests

from megflow_mp.supervisor import children_of
from tests.reliability.checks import photo_bytes
from tests.reliability.servers import NODES, ServerApp, free_port, wait_until
from tests.support.clips import make_clip
from tests.support.procfs import proc_name

VICTIMS = {"source": "the decoding worker", "shared": "a shared replica", "work": "a per-stream node"}
SECTION = "Killed processes under load (SIGKILL; 4 file streams on VideoServer, 16 HTTP clients on ImageServer)"
HANG = 30.0  # a client waiting this long for an answer counts as hung

VIDEO_APP = """
main = "serve"
[[nodes]]
name = "shared"
ty = "Pace"
cloned = 2
{restart}
[[graphs]]
name = "subgraph"
inputs = [{ name = "inp", cap = 16, ports = ["shared:inp"] }]
outputs = [{ name = "out", cap = 16, ports = ["work:out"] }]
connections = [{ cap = 16, ports = ["shared:out", "work:inp"] }]
    [[graphs.nodes]]
    name = "work"
    ty = "Lines"
    {restart}
[[graphs]]
name = "serve"
connections = [
  { cap = 16, ports = ["source:out", "destination:inp"] },
  { cap = 16, ports = ["source:inp", "destination:out"] },
]
    [[graphs.nodes]]
    name = "source"
    ty = "VideoServer"
    host = "127.0.0.1"
    port = {port}
    allow_dirs = ["{clips}"]
    {restart}
    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""

IMAGE_APP = """
main = "serve"
[[graphs]]
name = "serve"
connections = [
  { cap = 16, ports = ["source:out", "flip:inp"] },
  { cap = 16, ports = ["flip:out", "source:inp"] },
]
    [[graphs.nodes]]
    name = "source"
    ty = "ImageServer"
    host = "127.0.0.1"
    port = {port}
    timeout = 10
    {restart}
    [[graphs.nodes]]
    name = "flip"
    ty = "Flip"
    cloned = 2
    {restart}
"""

PACE = '''

@register(inputs=["inp"], outputs=["out"])
class Pace:
    """A shared node that takes 4 ms a frame (the streams play for a while)."""
    def __init__(self, name, args): pass
    def exec(self):
        import time
        e = self.inp.recv()
        if e is None: return
        time.sleep(0.004)
        self.out.send(e)
'''


def write(root: Path, name: str, toml: str) -> Path:
    pkg = root / name
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / f"{name}.toml").write_text(toml)
    (pkg / "__init__.py").write_text("")
    (pkg / "nodes.py").write_text(textwrap.dedent(NODES).lstrip() + PACE)
    return pkg


def node_pids(app: ServerApp, node: str) -> list[int]:
    """The workers of ``node`` (a worker names its process ``mf:<node>``)."""
    return sorted(pid for pid in children_of(app.proc.pid) if proc_name(pid) == f"mf:{node}"[:15])


class Load:
    """16 threads posting the photo to ImageServer; every answer (or its absence) is counted."""

    def __init__(self, url: str, clients: int = 16):
        self.url, self.stop = url, threading.Event()
        self.statuses: dict[int, int] = {}
        self.closed = self.hung = 0
        self.oks: list[tuple[float, float]] = []  # (sent, answered) of each 200
        self.outcomes: list[tuple[float, float, str]] = []  # (sent, done, status | "closed" | "hung") of each
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def client(self) -> None:
        body = photo_bytes()
        with requests.Session() as s:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    r = s.post(f"{self.url}/analyze/k", data=body, headers={"Content-Type": "image/jpeg"},
                               timeout=HANG)
                    with self.lock:
                        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                        if r.status_code == 200:
                            self.oks.append((sent, time.monotonic()))
                        self.outcomes.append((sent, time.monotonic(), str(r.status_code)))
                except requests.Timeout:
                    with self.lock:
                        self.hung += 1
                        self.outcomes.append((sent, time.monotonic(), "hung"))
                except requests.RequestException:  # refused, reset, or cut mid-answer
                    with self.lock:
                        self.closed += 1
                        self.outcomes.append((sent, time.monotonic(), "closed"))
                    time.sleep(0.02)

    def first_ok_after(self, t: float) -> float | None:
        """When the first request sent after ``t`` was answered 200 (None: none yet)."""
        with self.lock:
            return min((done for sent, done in self.oks if sent > t), default=None)

    def ok_since(self, t: float) -> bool:
        return self.first_ok_after(t) is not None

    def end(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(HANG + 5)

    def in_flight_at(self, t: float) -> dict[str, int]:
        """What became of the requests sent before ``t`` and not done by then."""
        out: dict[str, int] = {}
        with self.lock:
            for sent, done, outcome in self.outcomes:
                if sent < t < done:
                    out[outcome] = out.get(outcome, 0) + 1
        return out


def tcp_sockets(port: int) -> tuple[set[int], set[int]]:
    """The inodes of the listening socket on ``port`` and of the connections accepted on it.

    A connection still in the listening socket's accept queue has inode 0 (no process holds it: it
    goes with the listening socket) and is not counted as accepted."""
    listening, accepted = set(), set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                inode = int(fields[9])
                if int(fields[1].rsplit(":", 1)[1], 16) != port or not inode:
                    continue
                (listening if fields[3] == "0A" else accepted if fields[3] == "01" else set()).add(inode)
    return listening, accepted


def socket_holders(pids: list[int], inodes: set[int]) -> dict[int, int]:
    """How many of the sockets ``inodes`` each of ``pids`` has open."""
    held = {}
    for pid in pids:
        n = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                n += link.startswith("socket:[") and int(link[8:-1]) in inodes
        except OSError:
            continue
        held[pid] = n
    return held


def start_streams(url: str, clip: Path, n: int = 4) -> list[int]:
    out = []
    for _ in range(n):
        r = requests.post(f"{url}/start/{urllib.parse.quote(str(clip), safe='')}", timeout=30)
        assert r.status_code == 200, r.text
        out.append(int(r.text.rsplit(" ", 1)[1]))
    return out


def frames(url: str, ended: bool = False) -> dict[int, int]:
    """Frames decoded per stream that runs (``ended``: also per stream that played to its end)."""
    states = ("starting", "running", "finished") if ended else ("starting", "running")
    try:
        return {s["id"]: s["frames"] for s in requests.get(f"{url}/list", timeout=5).json() if s["state"] in states}
    except (requests.RequestException, ValueError):
        return {}


def moving(url: str, since: dict[int, int]) -> bool:
    """Every stream of ``since`` has decoded frames since, and runs or played to its end."""
    now = frames(url, ended=True)
    return all(now.get(sid, -1) > count for sid, count in since.items())


def shm_count() -> int:
    return len(os.listdir("/dev/shm"))


def test_sigkill_each_kind_of_process_under_load(tmp_path, sizes, figures):
    clips = tmp_path / "clips"
    clips.mkdir()
    clip = make_clip(clips / "long.mp4", frames=1500, size=(160, 96), gop=50)
    shm_before = shm_count()
    full = sizes.kills > 1  # small: without restart, only the per-stream node's kill
    stuck: dict[int, str] = {}  # result index: the streams of a restarted VideoServer app that did not resume
    results = []  # (what, recovered in s or None, in-flight answered, closed, hung, clean exit check)
    door_kills = []  # (restart, outcomes of the requests in flight, victim, supervisor, accepted, socket owners)
    for rnd in range(sizes.kills):
        for restart in (True, False):
            line = "restart = 3" if restart else "restart = 0"  # 0: opts out of the default policy
            # -- ImageServer: the front door's worker, then a Flip replica
            for target in ("source", "flip"):
                if not restart and not full:  # small: the VideoServer app's case below shows the clear end
                    continue
                port = free_port()
                pkg = write(tmp_path / f"img{rnd}{restart}{target}", "image_app",
                            IMAGE_APP.replace("{port}", str(port)).replace("{restart}", line))
                app = ServerApp(pkg, port, tmp_path)
                workers = list(app.workers)
                load = Load(app.url)
                try:
                    assert wait_until(lambda: load.ok_since(0), 30)
                    victim = node_pids(app, target)[0]
                    if target == "source":  # who holds the front door's sockets, just before the kill
                        listening, accepted = tcp_sockets(app.port)
                        tree = [app.proc.pid] + list(app.workers)
                        owners = (socket_holders(tree, listening), socket_holders(tree, accepted))
                    killed = time.monotonic()
                    os.kill(victim, signal.SIGKILL)
                    if restart:
                        back = wait_until(lambda: load.ok_since(killed), 30, step=0.005)
                        took = (load.first_ok_after(killed) - killed) if back else None
                        time.sleep(0.5)
                        ended = app.proc.poll() is None
                    else:
                        app.proc.wait(30)
                        took = None
                        ended = f"node '{target}'" in "".join(app.lines) and app.proc.returncode != 0
                finally:
                    load.end()
                    app.stop()
                left = [p for p in workers if _alive(p)]
                results.append((f"ImageServer app, {'restart' if restart else 'no restart'}: SIGKILL of "
                                f"{'the front door' if target == 'source' else 'a Flip replica'}", took,
                                sum(load.statuses.values()), load.closed, load.hung, ended, len(left),
                                target == "source", dict(load.statuses)))
                if target == "source":
                    door_kills.append((restart, load.in_flight_at(killed), victim, app.proc.pid, len(accepted),
                                       owners))
            # -- VideoServer: the decoding worker, a shared replica, a per-stream node's worker
            for target in ("source", "shared", "work"):
                if not restart and not full and target != "work":
                    continue
                port = free_port()
                pkg = write(tmp_path / f"vid{rnd}{restart}{target}", "video_app",
                            VIDEO_APP.replace("{port}", str(port)).replace("{restart}", line)
                            .replace("{clips}", str(clips)))
                app = ServerApp(pkg, port, tmp_path)
                workers = list(app.workers)
                try:
                    sids = start_streams(app.url, clip)
                    playing = wait_until(lambda: len(frames(app.url)) == 4 and min(frames(app.url).values()) > 5, 60)
                    assert playing, (requests.get(f"{app.url}/list", timeout=5).json(), "".join(app.lines)[-2000:])
                    victim = node_pids(app, target)[0]
                    before = frames(app.url)
                    killed = time.monotonic()
                    os.kill(victim, signal.SIGKILL)
                    if restart:
                        if target == "source":  # its streams lived in the killed process: start new ones
                            back = wait_until(lambda: _answers(app.url), 30, step=0.01)
                            new = start_streams(app.url, clip, 1) if back else []
                            back = back and wait_until(lambda: frames(app.url).get(new[0], 0) > 0, 30, step=0.01)
                        else:
                            back = wait_until(lambda: moving(app.url, {s: before.get(s, 0) for s in sids}),
                                              30, step=0.01)
                        took = time.monotonic() - killed if back else None
                        ended = app.proc.poll() is None
                        if not back:  # what the streams did instead
                            stuck[len(results)] = (f"{target}: " + "; ".join(
                                f"stream {x['id']} {x['state']} after {x['frames']} frames {x.get('reason') or ''}"
                                .strip() for x in requests.get(f"{app.url}/list", timeout=5).json()))
                    else:
                        app.proc.wait(30)
                        took = None
                        ended = f"node '{target}'" in "".join(app.lines) and app.proc.returncode != 0
                finally:
                    app.stop()
                left = [p for p in workers if _alive(p)]
                results.append((f"VideoServer app, {'restart' if restart else 'no restart'}: SIGKILL of "
                                f"{VICTIMS[target]}",
                                took, 0, 0, 0, ended, len(left), False, {}))
        # -- the supervisor
        port = free_port()
        pkg = write(tmp_path / f"sup{rnd}", "image_app", IMAGE_APP.replace("{port}", str(port))
                    .replace("{restart}", "restart = 3"))
        app = ServerApp(pkg, port, tmp_path)
        workers = list(app.workers)
        load = Load(app.url)
        try:
            assert wait_until(lambda: load.ok_since(0), 30)
            killed = time.monotonic()
            os.kill(app.proc.pid, signal.SIGKILL)
            app.proc.wait(10)
            gone = wait_until(lambda: not any(_alive(p) for p in workers), 10, step=0.005)
            took = time.monotonic() - killed if gone else None
        finally:
            load.end()
            app.stop()
        left = [p for p in workers if _alive(p)]
        results.append(("ImageServer app: SIGKILL of the supervisor (workers must go with it)", took,
                        sum(load.statuses.values()), load.closed, load.hung, not left, len(left), True,
                        dict(load.statuses)))
    shm_left = shm_count() - shm_before
    for i, (what, took, answered, closed, hung, ended, left, door, statuses) in enumerate(results):
        restarted = ", restart:" in what
        lost = int(hung > 0) + int(not ended) + left + int(restarted and took is None)
        notes = []
        if took is not None:
            notes.append(f"{'workers gone' if 'supervisor' in what else 'service back'} {took:.2f} s after the kill")
        if answered or closed:
            notes.append(f"requests answered {statuses}, connections closed {closed} "
                         f"({'allowed: the app or its front door died' if door or not restarted else 'not allowed'}), "
                         f"hung {hung}")
        notes.append(f"processes left {left}")
        if restarted and not door and closed:
            lost += 1
        if i in stuck:
            notes.append(stuck[i])
        figures.add(SECTION, what, 1, 1 if lost == 0 else 0, lost, notes)
    for restart, outcomes, victim, supervisor, accepted, (listen_owners, conn_owners) in door_kills:
        flight = sum(outcomes.values())
        hung = outcomes.get("hung", 0)
        others = {pid: n for pid, n in {**listen_owners, **conn_owners}.items() if pid != victim and n}
        alone = listen_owners.get(victim, 0) > 0 and conn_owners.get(victim, 0) == accepted and not others
        closed = outcomes.get("closed", 0)
        lost = hung + (0 if alone else closed)  # a closed connection is excused only when nobody could answer
        figures.add(SECTION, f"ImageServer app, {'restart' if restart else 'no restart'}: requests in flight when the "
                    "front door's worker is SIGKILLed: an answer (503/504 fine) where a process is left to give "
                    "one, else a closed connection; none hangs", flight, flight - lost, lost,
                    [f"in flight at the kill {flight}: {outcomes or 'none'}; an answer was impossible: just before "
                     f"the kill the listening socket and {conn_owners.get(victim, 0)} of the {accepted} accepted "
                     f"connections were open only in the killed worker (pid {victim}; the supervisor, pid "
                     f"{supervisor}, and the other workers held {others or 'none of them'}), so the kernel closed "
                     f"them with it (held alone: {alone})"])
    figures.add(SECTION, "after every kill: shared-memory entries left in /dev/shm", 1, int(shm_left <= 0),
                int(shm_left > 0), [f"{shm_left} left"])
    bad = [r for r in figures.rows if r.section == SECTION and r.lost]
    assert not bad, "\n".join(f"{r.what}: {r.notes}" for r in bad)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/list", timeout=2).ok
    except requests.RequestException:
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
