"""Health probes on real apps: ``/healthz`` and ``/readyz`` of the front doors (ImageServer,
BytesServer, VideoServer) and of ``megflow-mp run --metrics-port``.

A "slow model" here is a node whose ``__init__`` lasts until the test creates a file: the test
decides when loading ends, so every state is observed for as long as it needs, and each wait is a
poll of the running app with a deadline. Nothing is asserted about how fast anything happens.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.integration.conftest import ROOT, drain, free_port, start_cli, start_server, wait_listening, write_app
from tests.support.clips import data_dir

DATA = data_dir()
CATS = {"tabby, tabby cat", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat, Siamese"}

NODES = '''
import os
import time

from megflow import Envelope, register, sleep
from megflow_mp.nodes.image_server import ImageServer


def wait_for(path):
    """Until ``path`` exists (at most 120 s): a model load that lasts as long as the test wants."""
    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


@register(inputs=["inp"], outputs=["out"])
class SlowLoad:
    """Passes envelopes on. Its __init__ lasts until the file ``release`` exists; once the file
    ``crashed`` exists (a restarted process), until ``again`` exists. A request whose extra_data is
    "crash" kills its process."""

    def __init__(self, name, args):
        self.crashed = args.get("crashed")
        restarted = self.crashed is not None and os.path.exists(self.crashed)
        wait_for(args["again"] if restarted else args["release"])

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        if isinstance(envelope.msg, dict) and envelope.msg.get("extra_data") == "crash":
            open(self.crashed, "w").close()
            os.kill(os.getpid(), 9)
        self.out.send(envelope)


@register(outputs=["out"])
class Ticker:
    """Sends {"i": i} every few ms until the file ``stop`` exists."""

    def __init__(self, name, args):
        self.stop = args["stop"]

    def exec(self):
        i = 0
        while not os.path.exists(self.stop):
            self.out.send(Envelope.pack({"i": i}))
            i += 1
            sleep(2)


@register(name="GatedImageServer", inputs=["inp"], outputs=["out"])
class GatedImageServer(ImageServer):
    """An ImageServer with ready checks of its own, added in build_app as a built-in server node
    adds them: the file ``flag`` must exist, and a check that raises once the file ``broken`` exists."""

    def __init__(self, name, args):
        from megflow_mp.runtime.worker import current_worker

        super().__init__(name, args)
        self.flag, self.broken = args["flag"], args["broken"]
        self.bind_runtime(current_worker(), None)  # the engine binds built-in nodes only, not a plugin's

    def build_app(self):
        app = super().build_app()
        app.state.ready_checks.append(lambda: [] if os.path.exists(self.flag) else [f"no flag at {self.flag}"])
        app.state.ready_checks.append(self.check_broken)
        return app

    def check_broken(self):
        if os.path.exists(self.broken):
            raise RuntimeError("the check broke")
        return []
'''

SERVER_TOML = """
main = "serve"
[[graphs]]
name = "subgraph"
inputs = [{{ name = "inp", cap = 16, ports = ["{first}:inp"] }}]
outputs = [{{ name = "out", cap = 16, ports = ["{last}:out"] }}]
connections = [{inner}]
{nodes}
[[graphs]]
name = "serve"
connections = [
  {{ cap = 16, ports = ["source:out", "destination:inp"] }},
  {{ cap = 16, ports = ["source:inp", "destination:out"] }},
]
    [[graphs.nodes]]
    name = "source"
    ty = "{server}"
    port = {port}
    {server_args}
    [[graphs.nodes]]
    name = "destination"
    ty = "subgraph"
"""


def server_app(tmp_path, server: str, port: int, nodes: list[str], server_args: str = "",
               plugins: list[str] = ()):
    """An app: ``server`` -> a subgraph of ``nodes`` (inline TOML tables, chained) -> back."""
    names = [n.split('name = "')[1].split('"')[0] for n in nodes]
    inner = ", ".join(f'{{ cap = 16, ports = ["{a}:out", "{b}:inp"] }}' for a, b in zip(names, names[1:]))
    body = "\n".join(f"    [[graphs.nodes]]\n    {n}" for n in nodes)
    toml = SERVER_TOML.format(first=names[0], last=names[-1], inner=inner, nodes=body, server=server, port=port,
                              server_args=server_args)
    pkg = write_app(tmp_path, "health", {"health.toml": "", "nodes.py": NODES})
    listed = [str(pkg)] + [str(ROOT / p) for p in plugins]
    (pkg / "health.toml").write_text(f"plugins = {listed!r}\n".replace("'", '"') + toml)
    return pkg / "health.toml"


def probe(url: str):
    """``(status, JSON body)`` of a GET, or None while nothing listens there."""
    try:
        r = requests.get(url, timeout=10)
    except requests.ConnectionError:
        return None
    return r.status_code, r.json()


def poll(fn, what: str, timeout: float = 90):
    """``fn()`` until it is truthy (its value is returned); fails naming ``what`` after ``timeout``."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what}: not seen within {timeout:g} s (last: {last!r})")


def not_ready_naming(base: str, *words: str):
    """The reasons of a 503 from ``/readyz`` when one of them holds every word of ``words``."""
    got = probe(f"{base}/readyz")
    if got and got[0] == 503 and any(all(w in r for w in words) for r in got[1]["reasons"]):
        return got[1]["reasons"]
    return None


def ready(base: str):
    got = probe(f"{base}/readyz")
    return got[1] if got and got[0] == 200 else None


def settle(base: str) -> None:
    """Before a drain: the app has started (a Ctrl-C while it installs is not a drain)."""
    try:
        poll(lambda: ready(base), "/readyz 200 before the drain")
    except AssertionError:
        pass


def photo(name: str) -> bytes:
    return (DATA / "images" / name).read_bytes()


def test_readyz_before_and_after_models_load(tmp_path):
    """While a worker builds its nodes (its model loading): /healthz 200, /readyz 503 naming that
    node, the service's own route 503 "starting"; the real MobileNetV2 loads meanwhile and leaves
    the reasons; once the slow one is done: /readyz 200 and the model answers."""
    release = tmp_path / "release"
    port = free_port()
    config = server_app(tmp_path, "ImageServer", port, [
        f'name = "load"\n    ty = "SlowLoad"\n    release = "{release}"',
        f'name = "classify"\n    ty = "Classify"\n    model = "{ROOT / "models/mobilenet_v2_1.0_224_fp32.onnx"}"'
        f'\n    threads = 1'], server_args='response = "json"', plugins=["plugins/simple_classification"])
    base = f"http://127.0.0.1:{port}"
    proc = start_cli("run", config)
    try:
        reasons = poll(lambda: not_ready_naming(base, "'load'", "building its nodes"), "/readyz naming 'load'")
        assert any("'source'" in r and "has not started" in r for r in reasons), reasons
        assert probe(f"{base}/healthz") == (200, {"status": "ok"})
        early = requests.post(f"{base}/analyze/cat", data=photo("cat_720p.jpg"), headers={"Content-Type": "image/*"},
                              timeout=30)
        assert early.status_code == 503 and early.json() == {"detail": "starting"}
        assert early.headers["Retry-After"] == "1"
        # the real model's worker is done on its own: only the slow one is still building
        reasons = poll(lambda: (r := not_ready_naming(base, "'load'")) and not any("'classify'" in x for x in r)
                       and r, "'classify' loaded while 'load' is not")
        assert probe(f"{base}/healthz") == (200, {"status": "ok"})
        release.touch()
        assert poll(lambda: ready(base), "/readyz 200") == {"ready": True, "workers": 3}
        r = requests.post(f"{base}/analyze/cat", data=photo("cat_720p.jpg"), headers={"Content-Type": "image/*"},
                          timeout=60)
        assert r.status_code == 200 and r.json()["top"][0]["label"] in CATS, r.text
        assert probe(f"{base}/healthz") == (200, {"status": "ok"})
    finally:
        release.touch()
        settle(base)
        drain(proc)


def test_readyz_names_a_killed_worker_until_it_is_back(tmp_path):
    """``restart = 1``: the node's worker killed mid-run makes /readyz 503 naming it while it is
    started again (its model loading again), then 200; the service answers afterwards."""
    release, again, crashed = tmp_path / "release", tmp_path / "again", tmp_path / "crashed"
    release.touch()
    port = free_port()
    config = server_app(tmp_path, "ImageServer", port, [
        f'name = "work"\n    ty = "SlowLoad"\n    restart = 1\n    release = "{release}"\n    again = "{again}"'
        f'\n    crashed = "{crashed}"'], server_args="timeout = 5")
    proc, base = wait_listening(start_cli("run", config))
    body = photo("cat_720p.jpg")

    def send_crash():  # its answer is lost with the worker (504 after the server's timeout): not looked at
        try:
            requests.post(f"{base}/analyze/crash", data=body, timeout=60)
        except requests.RequestException:
            pass

    crash = threading.Thread(target=send_crash)
    try:
        assert poll(lambda: ready(base), "/readyz 200") == {"ready": True, "workers": 2}
        crash.start()
        reasons = poll(lambda: not_ready_naming(base, "'work'", "restarting"), "/readyz naming the restarting 'work'")
        assert crashed.exists() and len(reasons) == 1, reasons
        assert probe(f"{base}/healthz") == (200, {"status": "ok"})
        again.touch()
        assert poll(lambda: ready(base), "/readyz 200 again") == {"ready": True, "workers": 2}
        r = requests.post(f"{base}/analyze/cat", data=body, headers={"Content-Type": "image/*"}, timeout=30)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    finally:
        again.touch()
        if crash.ident is not None:
            crash.join(60)
        settle(base)
        drain(proc)


def test_metrics_port_serves_health_of_a_batch_app(tmp_path):
    """``run --metrics-port`` of an app without a front door: /healthz 200 at once, /readyz 503
    naming the node that loads, then 200; both in its OpenAPI document."""
    release, stop = tmp_path / "release", tmp_path / "stop"
    toml = f"""
main = "g"
[[graphs]]
name = "g"
connections = [
  {{ cap = 16, ports = ["source:out", "load:inp"] }},
  {{ cap = 16, ports = ["load:out", "sink:inp"] }},
]
nodes = [
  {{ name = "source", ty = "Ticker", stop = "{stop}" }},
  {{ name = "load", ty = "SlowLoad", release = "{release}" }},
  {{ name = "sink", ty = "NoopConsumer" }},
]
"""
    app = write_app(tmp_path, "batch", {"batch.toml": toml, "nodes.py": NODES})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_cli("run", "-p", app, "--metrics-port", port)
    try:
        poll(lambda: not_ready_naming(base, "'load'", "building its nodes"), "/readyz naming 'load'")
        assert probe(f"{base}/healthz") == (200, {"status": "ok"})
        release.touch()
        assert poll(lambda: ready(base), "/readyz 200") == {"ready": True, "workers": 3}
        spec = requests.get(f"{base}/openapi.json", timeout=10).json()
        check_documented(spec)
    finally:
        release.touch()
        stop.touch()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_a_ready_check_a_node_adds_is_among_the_reasons(tmp_path):
    """``app.state.ready_checks``: a node's own condition makes /readyz 503 with its reason (alone:
    every worker is up), then 200 once it holds; a check that raises is a reason too."""
    flag, broken = tmp_path / "flag", tmp_path / "broken"
    port = free_port()
    config = server_app(tmp_path, "GatedImageServer", port, ['name = "work"\n    ty = "SlowLoad"\n    release = "."'],
                        server_args=f'flag = "{flag}"\n    broken = "{broken}"')
    proc, base = wait_listening(start_cli("run", config))
    try:
        assert poll(lambda: not_ready_naming(base, "no flag"), "the node's reason") == [f"no flag at {flag}"]
        flag.touch()
        assert poll(lambda: ready(base), "/readyz 200") == {"ready": True, "workers": 2}
        broken.touch()
        (reason,) = poll(lambda: not_ready_naming(base, "RuntimeError"), "the raising check's reason")
        assert "check_broken" in reason and "the check broke" in reason
    finally:
        drain(proc)


def check_documented(spec: dict) -> None:
    """/healthz and /readyz in an OpenAPI document, with their answers' schemas and examples."""
    health = spec["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]
    assert health["example"] == {"status": "ok"} and "schema" in health
    answers = spec["paths"]["/readyz"]["get"]["responses"]
    for status, key in (("200", "workers"), ("503", "reasons")):
        content = answers[status]["content"]["application/json"]
        assert key in content["example"], content
        ref = content["schema"]["$ref"].rsplit("/", 1)[1]
        assert {"ready", key} <= set(spec["components"]["schemas"][ref]["properties"])


@pytest.mark.parametrize("server", ["ImageServer", "BytesServer", "VideoServer"])
def test_every_front_door_documents_and_answers_the_probes(tmp_path, server):
    """Each front door's OpenAPI document lists /healthz and /readyz; its /readyz says ready once
    it runs (a VideoServer app's per-stream worker has no static node: it is up once forked)."""
    release = tmp_path / "release"
    release.touch()
    proc, base = start_server(server_app(tmp_path, server, free_port(),
                                         [f'name = "work"\n    ty = "SlowLoad"\n    release = "{release}"']).parent)
    try:
        check_documented(requests.get(f"{base}/openapi.json", timeout=10).json())
        assert poll(lambda: ready(base), "/readyz 200") == {"ready": True, "workers": 2}
        assert probe(f"{base}/healthz") == (200, {"status": "ok"})
    finally:
        drain(proc)
