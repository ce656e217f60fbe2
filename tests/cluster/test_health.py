"""Health probes of an app on a real Ray cluster (``--ray``): the ImageServer's ``/readyz`` names
a node that is still building on another machine, then says ready, counting every worker."""

from __future__ import annotations

import signal

import requests

from tests.cluster.conftest import start_app
from tests.integration.conftest import free_port
from tests.integration.test_health import not_ready_naming, poll, probe, ready, server_app


def test_readyz_waits_for_a_node_loading_on_another_machine(ray_cluster, tmp_path):
    release = tmp_path / "release"
    port = free_port()
    config = server_app(tmp_path, "ImageServer", port, [
        f'name = "work"\n    ty = "SlowLoad"\n    release = "{release}"\n'
        f'    placement = {{ resources = {{ site_b = 1 }} }}'])
    log = tmp_path / "app.log"
    proc = start_app(config, ray_cluster.address, log, plugins=config.parent)
    base = f"http://127.0.0.1:{port}"
    try:
        reasons = poll(lambda: not_ready_naming(base, "'work'", "building its nodes"), "/readyz naming 'work'",
                       timeout=180)
        (reason,) = [r for r in reasons if "'work'" in r]
        assert ", on machine" in reason, reason  # the cluster supervisor's description: where it runs
        assert probe(f"{base}/healthz") == (200, {"status": "ok"})
        release.touch()
        assert poll(lambda: ready(base), "/readyz 200", timeout=120) == {"ready": True, "workers": 2}
        r = requests.post(f"{base}/analyze/x", data=b"", timeout=30)
        assert r.status_code == 400  # an empty body: the service runs its routes
    finally:
        release.touch()
        try:
            poll(lambda: ready(base), "/readyz 200 before the drain", timeout=60)
        except AssertionError:
            pass
        proc.send_signal(signal.SIGINT)
        proc.wait(120)
    assert proc.returncode == 0, log.read_text()[-3000:]
