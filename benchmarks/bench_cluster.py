"""The same graphs on a Ray cluster (``--ray``): several raylets on this one machine.

One cluster per module (tests/support/cluster.local_cluster): the head (the driver's machine), ``b``
and ``c``, each its own raylet with its own object store; ``b`` and ``c`` carry the custom resources
``site_b`` / ``site_c``; each of the three has two ``slot`` s (one per model node placed there).

* group ``cluster_frames``, 1080p frames (6.2 MB) from the driver's machine to machine ``b``,
  frames/s at the sink: ``engine`` = benchmarks/apps/cluster/frames.toml (ChainSource -> ChainSink
  placed on ``site_b``: each frame crosses once, bridge to bridge over TCP), ``ray`` = plain Ray
  (benchmarks/ray_frames.py: one actor ``ray.put``s each frame, an actor on ``b`` gets it); both
  with at most ``CAP`` frames in flight and the same counter-byte check. Target: engine >= 1.0x ray.
* group ``cluster_overhead``, the chain of benchmarks/bench_chain.py (5 processes, small
  envelopes, ``cap = 16``), envelopes/s: ``engine`` (``--ray`` on the cluster; the graph has no
  placement, so every process runs on the driver's machine, as on a one-machine cluster) and
  ``plain`` (the same run without Ray). Target: engine >= 0.95x plain.
* group ``cluster_det_classify``: simple_det_classify over 8 clips (640x360, 30 frames; the
  shipped video_test.toml) with its detector and classifier ``cloned = k`` and placed one replica
  per raylet (``placement = { resources = { slot = 1 } }``) for k = 1, 2, 3 raylets; 90 frames a
  clip, frames/s = (frames - streams) / (wall of the run - wall of the same run on one-frame clips),
  which leaves out startup, placement and model loads. All raylets share this machine's 2 cores: this shows the cost of spreading, not
  a speed-up; ``3-replicas-no-ray`` (the same 3 replicas of each model, one machine, no Ray) tells
  what the replicas alone give.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench_video_apps import APPS as VIDEO_APPS
from bench_video_apps import run_app
from harness import APPS, ROOT, interleaved, record, run_engine, scaled
from serving import engine_env

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_FRAMES, CAP, POOL, WARMUP = scaled(300, 20), 8, 10, scaled(20, 2)
N_SMALL, CAP_SMALL, WARMUP_SMALL = scaled(50_000, 500), 16, scaled(1000, 10)
STREAMS, FRAMES_PER_CLIP, DET_CLASSIFY = 8, scaled(90, 4), "simple_det_classify"


@pytest.fixture(scope="module")
def cluster():
    from tests.support.cluster import local_cluster

    with local_cluster(2, ({"num_cpus": 2, "resources": {"site_b": 1, "slot": 2}},
                           {"num_cpus": 2, "resources": {"site_c": 1, "slot": 2}}), head_resources={"slot": 2}) as c:
        yield c


def engine_frames(address: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "sink.json"
        result = run_engine(APPS / "cluster" / "frames.toml", APPS / "chain",
                            {"n": N_FRAMES, "cap": CAP, "pool": POOL, "warmup": WARMUP, "site": "site_b",
                             "report": str(report)}, args=("--ray", address, "--no-metrics"))
        return {**result, **json.loads(report.read_text())}


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
@pytest.mark.parametrize("variant,round_", interleaved({"engine": 3, "plain": 3}))
def test_cluster_overhead(benchmark, cluster, variant, round_):
    address = cluster.address if variant == "engine" else None
    result = benchmark.pedantic(chain_small, args=(address,), rounds=1, iterations=1)
    assert result["bad"] == 0 and result["count"] == N_SMALL, result
    record(benchmark, variant, "envelopes/s", result, round_, messages=N_SMALL, cap=CAP_SMALL)


@pytest.fixture(scope="module")
def det_classify(tmp_path_factory):
    """The clips (full, and one-frame ones for the startup runs) and the configs with k = 1, 2, 3
    placed replicas (and 3 on one machine)."""
    from tests.support.clips import make_clip
    from tests.support.cluster import placed

    folder = tmp_path_factory.mktemp("cluster_det_classify")
    size, frames, photos = VIDEO_APPS[DET_CLASSIFY]
    frames = FRAMES_PER_CLIP
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
    t = text
    for node in ("det", "classify"):
        t = placed(t, node, "cloned = 3")
    configs["local"] = folder / "video_test_local.toml"
    configs["local"].write_text(t)
    return clips, configs, frames


def det_classify_run(config, urls: list[str], address: str | None) -> dict:
    ray = ("--ray", address, "--no-metrics") if address else ("--no-metrics",)
    return run_app(DET_CLASSIFY, {"urls": urls}, config=config, args=ray)


@pytest.mark.benchmark(group="cluster_det_classify")
@pytest.mark.parametrize("raylets", [1, 2, 3, "local"])
def test_cluster_det_classify(benchmark, cluster, det_classify, raylets):
    clips, configs, frames = det_classify
    address = None if raylets == "local" else cluster.address
    startup = det_classify_run(configs[raylets], clips["startup"], address)
    full = benchmark.pedantic(det_classify_run, args=(configs[raylets], clips["full"], address), rounds=1, iterations=1)
    assert len(full["messages"]) == STREAMS * frames, f"{len(full['messages'])} messages for {STREAMS} x {frames} frames"
    seconds = full["wall"] - startup["wall"]
    result = {"rate": (STREAMS * frames - STREAMS) / seconds, "seconds": seconds, "wall": full["wall"],
              "startup_wall": startup["wall"]}
    variant = "3-replicas-no-ray" if raylets == "local" else f"{raylets}-raylets"
    record(benchmark, variant, "frames/s", result, 0, raylets=raylets, streams=STREAMS)
