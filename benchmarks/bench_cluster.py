"""The same graphs on a Ray cluster (``--ray``): several raylets on this one machine.

One cluster per module (tests/support/cluster.local_cluster): the head (the driver's machine), ``b``
and ``c``, each its own raylet with its own object store; ``b`` and ``c`` carry the custom resources
``site_b`` / ``site_c`` and one ``slot`` each (the head has one ``slot`` too).

* group ``cluster_frames``, 1080p frames (6.2 MB) from the driver's machine to machine ``b``,
  frames/s at the sink: ``engine`` = benchmarks/apps/cluster/frames.toml (ChainSource -> ChainSink
  placed on ``site_b``: each frame crosses once, bridge to bridge over TCP), ``ray`` = plain Ray
  (benchmarks/ray_frames.py: one actor ``ray.put``s each frame, an actor on ``b`` gets it); both
  with at most ``CAP`` frames in flight and the same counter-byte check. Target: engine >= 1.0x ray.
* group ``cluster_overhead``, the chain of benchmarks/bench_chain.py (5 processes, small
  envelopes, ``cap = 16``), envelopes/s: ``plain`` (no Ray) and ``ray`` (``--ray`` on the cluster;
  the graph has no placement, so every process runs on the driver's machine, as on a one-machine
  cluster). Target: ray >= 0.95x plain.
* group ``cluster_det_classify``: simple_det_classify over 8 clips (640x360, 30 frames; the
  shipped video_test.toml) with its detector and classifier ``cloned = k`` and placed one replica
  per raylet (``placement = { resources = { slot = 1 } }``) for k = 1, 2, 3 raylets, frames/s as in
  bench_video_apps (minus a startup run). All raylets share this machine's 2 cores: this shows the
  cost of spreading, not a speed-up.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench_video_apps import APPS as VIDEO_APPS
from bench_video_apps import run_app
from harness import APPS, ROOT, interleaved, record, run_engine
from serving import engine_env

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_FRAMES, CAP, POOL, WARMUP = 300, 8, 10, 20
N_SMALL, CAP_SMALL, WARMUP_SMALL = 50_000, 16, 1000
STREAMS, DET_CLASSIFY = 8, "simple_det_classify"


@pytest.fixture(scope="module")
def cluster():
    from tests.support.cluster import local_cluster

    with local_cluster(2, ({"num_cpus": 2, "resources": {"site_b": 1, "slot": 1}},
                           {"num_cpus": 2, "resources": {"site_c": 1, "slot": 1}})) as c:
        yield c


def engine_frames(address: str) -> dict:
    return run_engine(APPS / "cluster" / "frames.toml", APPS / "chain",
                      {"n": N_FRAMES, "cap": CAP, "pool": POOL, "warmup": WARMUP, "site": "site_b"},
                      args=("--ray", address, "--no-metrics"))


def ray_frames(address: str) -> dict:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ray_frames.py"), "--address", address,
                        "--n", str(N_FRAMES), "--cap", str(CAP), "--pool", str(POOL), "--warmup", str(WARMUP),
                        "--site", "site_b"], cwd=ROOT, env=engine_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="cluster_frames")
@pytest.mark.parametrize("variant,round_", interleaved({"engine": 3, "ray": 3}))
def test_cluster_frames(benchmark, cluster, variant, round_):
    run = engine_frames if variant == "engine" else ray_frames
    result = benchmark.pedantic(run, args=(cluster.address,), rounds=1, iterations=1)
    assert result["bad"] == 0 and result["count"] == N_FRAMES, result
    record(benchmark, variant, "frames/s", result, round_, frames=N_FRAMES, cap=CAP)


def chain_small(address: str | None) -> dict:
    args = ("--no-metrics",) + (("--ray", address) if address else ())
    return run_engine(APPS / "chain" / "chain.toml", APPS / "chain",
                      {"kind": "small", "n": N_SMALL, "cap": CAP_SMALL, "pool": 1, "warmup": WARMUP_SMALL}, args=args)


@pytest.mark.benchmark(group="cluster_overhead")
@pytest.mark.parametrize("variant,round_", interleaved({"plain": 3, "ray": 3}))
def test_cluster_overhead(benchmark, cluster, variant, round_):
    address = cluster.address if variant == "ray" else None
    result = benchmark.pedantic(chain_small, args=(address,), rounds=1, iterations=1)
    assert result["bad"] == 0 and result["count"] == N_SMALL, result
    record(benchmark, variant, "envelopes/s", result, round_, messages=N_SMALL, cap=CAP_SMALL)


@pytest.fixture(scope="module")
def det_classify(tmp_path_factory):
    """Clips (8 full, 8 one-frame) and the configs with k = 1, 2, 3 placed replicas."""
    from tests.support.clips import make_clip
    from tests.support.cluster import placed

    folder = tmp_path_factory.mktemp("cluster_det_classify")
    size, frames, photos = VIDEO_APPS[DET_CLASSIFY]
    clips = {kind: [str(make_clip(folder / f"{kind}_{i}.mp4", frames=n, size=size, image=photos[i % len(photos)]))
                    for i in range(STREAMS)] for kind, n in (("full", frames), ("startup", 1))}
    text = (ROOT / "configs" / DET_CLASSIFY / "video_test.toml").read_text()
    configs = {}
    for k in (1, 2, 3):
        t = text
        for node in ("det", "classify"):
            t = placed(t, node, f"cloned = {k}", "placement = { resources = { slot = 1 } }")
        configs[k] = folder / f"video_test_{k}.toml"
        configs[k].write_text(t)
    return clips, configs, frames


@pytest.mark.benchmark(group="cluster_det_classify")
@pytest.mark.parametrize("raylets", [1, 2, 3])
def test_cluster_det_classify(benchmark, cluster, det_classify, raylets):
    clips, configs, frames = det_classify
    args = ("--ray", cluster.address, "--no-metrics")
    startup = run_app(DET_CLASSIFY, {"urls": clips["startup"]}, config=configs[raylets], args=args)

    def run():
        return run_app(DET_CLASSIFY, {"urls": clips["full"]}, config=configs[raylets], args=args)

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    msgs = [m for _, m in result["messages"]]
    assert len(msgs) == STREAMS * frames, f"{len(msgs)} frame messages for {STREAMS} x {frames} frames"
    seconds = result["wall"] - startup["wall"]
    out = {"rate": (STREAMS * frames - STREAMS) / seconds, "seconds": seconds, "wall": result["wall"],
           "startup_wall": startup["wall"]}
    record(benchmark, f"{raylets}-raylets", "frames/s", out, 0, raylets=raylets, streams=STREAMS)
