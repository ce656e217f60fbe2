"""Turn the pytest-benchmark JSON of ``make bench`` into ``benchmarks/RESULTS.md`` (and print it).

Usage: ``python benchmarks/report.py [BENCH_JSON] [-o OUT.md]``; defaults: ``.benchmarks/bench.json``
and ``benchmarks/RESULTS.md``.

Each benchmark entry is one round of one variant (rounds of a group's variants run interleaved);
rates are the ones the sinks measured themselves (``extra_info``). The table shows per variant the
median and the best round, and the engine's median divided by each baseline's median, plus the
range of the round-by-round ratios (engine round k / baseline round k, neighbours in time).

The server benchmarks have tables of their own: ``image_server`` (requests/s and latency of the
ImageServer round trip next to plain FastAPI + uvicorn servers), ``classify_server`` (a MobileNetV2
service with dynamic batching next to plain FastAPI + onnxruntime endpoints) and ``video`` (frames/s
of VideoServer and VideoInput over N files next to PyAV decode-only, and the engine's overhead, one
block per frame size). So do the apps (``det_classify``: batch_recv on vs off; ``electric_bicycle``:
the app vs decode-only and vs a plain decode + detect loop) and the model layer (``models``:
megenginelite vs onnxruntime latency; ``batching``: rebatched vs chunked inference), and
``cameras``: how many live RTSP cameras the engine and a plain program hold in real time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# group -> (chain, {variant: label}, {baseline: minimum engine/baseline ratio}, minimum engine rate)
THROUGHPUT = {
    "frames": ("1080p BGR frames (6.2 MB), source -> Transform -> sink",
               {"engine": "engine", "engine_nometrics": "engine, metrics off (--no-metrics)",
                "raw": "raw limit: shm ring + Pipe of slot indices", "queue": "multiprocessing.Queue"},
               {"raw": 0.9, "engine_nometrics": 0.97}, None),
    "envelopes": ('small envelopes `{"i": i}`, source -> Transform -> sink',
                  {"engine": "engine", "engine_nometrics": "engine, metrics off (--no-metrics)",
                   "pipe": "Connection.send per message"},
                  {"engine_nometrics": 0.97}, 100_000),
    "chain_small": ('small envelopes `{"i": i}`, source -> 3 Python relays -> sink (5 workers, 4 hops)',
                    {"engine": "engine, cap 16", "engine_cap256": "engine, cap 256",
                     "ring": "plain ring of 4 processes (source + sink in one, 3 relays, 4 hops), "
                             "Connection.send per message per hop, <= 16 in flight"},
                    {"ring": 1.0}, None),
    "chain_frames": ("1080p BGR frames (6.2 MB), source -> 3 Python relays -> sink (5 workers, 4 hops)",
                     {"engine": "engine, cap 8", "raw": "raw limit: shm ring + Pipes of slot indices, 5 processes"},
                     {"raw": 0.9}, None),
    "cluster_frames": ("1080p BGR frames (6.2 MB) from one Ray node to another (two raylets, one host)",
                       {"engine": "engine, --ray: source on machine 0, sink placed on machine b, cap 8",
                        "ray": "plain Ray: one actor ray.puts each frame, an actor on b gets it, <= 8 in flight"},
                       {"ray": 1.0}, None),
    "sink_webhook": ("sink messages to a local HTTP receiver (http.server), batch 1",
                     {"engine": "WebhookSink's outlet (spool + delivery thread)",
                      "plain": "requests.Session.post in a loop"}, {}, None),
    "sink_mqtt": ("sink messages to a local mosquitto, QoS 1",
                  {"engine": "MqttSink's outlet, batch 100", "plain": "paho publish + PUBACK wait per 100"}, {}, None),
    "sink_redis": ("sink messages to a local redis stream (XADD MAXLEN ~)",
                   {"engine": "RedisStreamSink's outlet, batch 100", "plain": "redis-py pipeline of 100 XADDs"},
                   {}, None),
    "sink_jsonl": ("sink messages to a JSON-lines file, fsync per batch",
                   {"engine": "JsonlSink's outlet, batch 100", "plain": "os.write of 100 lines + fsync"}, {}, None),
    "sink_spool": ("sink puts (the node's exec) while the destination is down vs up",
                   {"engine": "destination down: every message to the spool", "plain": "destination up"}, {}, None),
    "cluster_overhead": ('small envelopes `{"i": i}`, the chain of 5 workers, cap 16, every process on one machine',
                         {"engine": "engine with --ray (a Ray cluster, no placement)", "plain": "engine without Ray"},
                         {"plain": 0.95}, None),
}


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _machine(data: dict) -> list[str]:
    mi = data.get("machine_info", {})
    cpu = mi.get("cpu", {})
    extra = mi.get("megflow_bench", {})
    commit = data.get("commit_info", {})
    parts = [
        f"{cpu.get('brand_raw') or mi.get('processor') or '?'}, {extra.get('cpu_count', cpu.get('count', '?'))} cores",
        f"{extra.get('mem_total_gib', '?')} GiB RAM",
        f"{mi.get('system', '')} {mi.get('release', '')}".strip(),
        f"Python {mi.get('python_version', '?')}",
        f"numpy {extra.get('numpy', '?')}",
    ]
    lines = [f"- Machine: {', '.join(parts)}"]
    if extra.get("loadavg_at_start"):
        lines.append(f"- Load average at start: {' '.join(extra['loadavg_at_start'])} (other work on the machine)")
    rev = (commit.get("id") or "")[:12]
    dirty = " + uncommitted changes" if commit.get("dirty") else ""
    lines.append(f"- Run: {data.get('datetime', '?')}" + (f", commit {rev}{dirty}" if rev else ""))
    return lines


def _rounds(benches: list[dict], group: str, select=None) -> dict[str, dict[int, dict]]:
    """variant -> round -> extra_info, in the order the variants first appear (only the entries
    whose extra_info ``select`` accepts, when given)."""
    out: dict[str, dict[int, dict]] = {}
    for b in benches:
        info = b.get("extra_info", {})
        if b.get("group") == group and "variant" in info and (select is None or select(info)):
            out.setdefault(info["variant"], {})[info.get("round", len(out.get(info["variant"], {})) + 1)] = info
    return out


def _throughput(benches: list[dict]) -> tuple[list[str], list[str]]:
    rows, verdicts = [], []
    for group, (chain, labels, targets, min_rate) in THROUGHPUT.items():
        variants = _rounds(benches, group)
        if not variants:
            continue
        order = [v for v in labels if v in variants] + [v for v in variants if v not in labels]
        rates = {v: [i["rate"] for _, i in sorted(variants[v].items())] for v in order}
        unit = next(iter(variants[order[0]].values()))["unit"]
        eng = rates.get("engine")
        eng_med = statistics.median(eng) if eng else None
        for v in order:
            med = statistics.median(rates[v])
            ratio = ""
            if v != "engine" and eng_med:
                r = eng_med / med
                paired = [variants["engine"][k]["rate"] / variants[v][k]["rate"]
                          for k in sorted(variants[v]) if k in variants["engine"]]
                ratio = f"**{r:.2f}**"
                if len(paired) > 1:
                    ratio += f" ({min(paired):.2f}-{max(paired):.2f})"
                if v in targets:
                    verdicts.append(f"- {group}: engine / {v} = {r:.3f}, target >= {targets[v]}: "
                                    f"**{'met' if r >= targets[v] else 'MISSED'}**")
            rows.append(f"| {chain if v == order[0] else ''} | {labels.get(v, v)} | {_fmt(med)} {unit} "
                        f"| {_fmt(max(rates[v]))} | {len(rates[v])} | {ratio} |")
        if min_rate and eng_med is not None:
            verdicts.append(f"- {group}: engine {eng_med:,.0f} {unit}, target >= {min_rate:,}: "
                            f"**{'met' if eng_med >= min_rate else 'MISSED'}**")
    table = []
    if rows:
        table = ["## Throughput", "",
                 "| chain | variant | rate (median) | best | rounds | engine / this (per-round range) |",
                 "|---|---|---:|---:|---:|---:|", *rows, ""]
    return table, verdicts


def _instances(benches: list[dict]) -> list[str]:
    variants = _rounds(benches, "instances")
    if not variants:
        return []
    sizes = sorted(variants, key=lambda v: int(v))
    agg = {}
    for v in sizes:
        infos = list(variants[v].values())
        agg[v] = {
            "n": int(v),
            "wall": statistics.median(i["wall"] for i in infos),
            "rss": max(i["peak_rss_mib"] for i in infos),
            "pss": max(i["peak_pss_mib"] for i in infos),
            "procs": max(i["max_procs"] for i in infos),
            "rounds": len(infos),
        }
    base = agg[sizes[0]]
    out = ["## Dynamic subgraph instances (the logical_test app)", "",
           "Wall time of the whole run (startup included, median of the rounds); peak over the run of the "
           "summed RSS and summed PSS of all its processes (sampled every 20 ms; RSS counts a shared page "
           "in every process, PSS splits it); most processes seen at once (supervisor, 8 workers, the "
           "child that the shared node forks).", "",
           "| instances | wall (s) | ms per instance beyond the smallest run | peak RSS sum (MiB) "
           "| peak PSS sum (MiB) | processes | rounds |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for v in sizes:
        a = agg[v]
        per = ""
        if a["n"] > base["n"]:
            per = f"{1000 * (a['wall'] - base['wall']) / (a['n'] - base['n']):.2f}"
        out.append(f"| {a['n']} | {a['wall']:.2f} | {per} | {a['rss']:.0f} | {a['pss']:.0f} "
                   f"| {a['procs']} | {a['rounds']} |")
    procs = sorted({a["procs"] for a in agg.values()})
    out += ["", f"Process count {'constant' if len(procs) == 1 else 'NOT constant'} across instance counts: "
            f"{', '.join(map(str, procs))}.", ""]
    return out


def render(data: dict) -> str:
    benches = data.get("benchmarks", [])
    out = ["# megflow-mp benchmarks", ""]
    out += _machine(data)
    out += ["", "Rates are measured by each chain's own sink, from the first message after a warm-up to "
            "the last. Engine and baselines ran in the same session, their rounds interleaved; the "
            "machine is shared and noisy, so read the ratios, not the absolute numbers.", ""]
    table, verdicts = _throughput(benches)
    out += table
    if verdicts:
        out += ["Targets:", "", *verdicts, ""]
    out += _instances(benches)
    out += _image_server(benches)
    out += _classify_server(benches)
    out += _video(benches)
    out += _det_classify(benches)
    out += _electric_bicycle(benches)
    out += _models(benches)
    out += _batching(benches)
    out += _live_view(benches)
    out += _cluster_det_classify(benches)
    out += _cameras(benches)
    return "\n".join(out)


def _cluster_det_classify(benches: list[dict]) -> list[str]:
    variants = _rounds(benches, "cluster_det_classify")
    if not variants:
        return []
    out = ["## simple_det_classify on 1-3 raylets", "",
           "8 clips (640x360, 90 frames) through video_test.toml; detector and classifier `cloned = k`, one "
           "replica per raylet (`placement = { resources = { slot = 1 } }`). Every raylet runs on this same "
           "2-core host, so more raylets add replicas, not cores: this shows the cost of spreading, not a "
           "speed-up. `3-replicas-no-ray`: the same 3 replicas on one machine without Ray.", "",
           "| variant | frames/s |", "|---|---:|"]
    rates = {v: statistics.median(i["rate"] for i in rounds.values()) for v, rounds in variants.items()}
    out += [f"| {v} | {_fmt(r)} |" for v, r in rates.items()]
    if "3-raylets" in rates and "3-replicas-no-ray" in rates:
        out += ["", f"3 raylets / 3 replicas without Ray = {rates['3-raylets'] / rates['3-replicas-no-ray']:.2f} "
                "(what crossing raylets costs when the work is the same)"]
    return out + [""]


def _median_of(infos: list[dict], key: str, digits: int = 2) -> str:
    values = [i[key] for i in infos if key in i]
    return f"{statistics.median(values):.{digits}f}" if values else ""


def _paired(variants: dict, a: str, b: str) -> list[float]:
    """Round-by-round ratios a / b (rounds run next to each other in time)."""
    return [variants[a][k]["rate"] / variants[b][k]["rate"] for k in sorted(variants[b]) if k in variants[a]]


def _range(ratios: list[float]) -> str:
    return f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""


IMAGE_LABELS = {
    "engine": "engine: ImageServer -> Transform subgraph -> ImageServer",
    "plain": "plain FastAPI + uvicorn, same decode/encode (asyncio loop, as the engine)",
    "plain-uvloop": "plain FastAPI + uvicorn, uvicorn's default loop (uvloop)",
}


def _image_server(benches: list[dict]) -> list[str]:
    variants = _rounds(benches, "image_server")
    if not variants:
        return []
    order = [v for v in IMAGE_LABELS if v in variants] + [v for v in variants if v not in IMAGE_LABELS]
    first = next(iter(variants[order[0]].values()))
    eng = variants.get("engine")
    eng_med = statistics.median(i["rate"] for i in eng.values()) if eng else None
    out = ["## HTTP image round trip (ImageServer)", "",
           f"{first.get('clients', '?')} concurrent clients (threads of the benchmark process, one keep-alive "
           f"`requests.Session` each) in a closed loop POST a COCO photo ({first.get('photo', '?')}, "
           f"{first.get('photo_bytes', 0) / 1024:.0f} KiB JPEG) and get its JPEG re-encoding back; "
           f"{first.get('requests', '?')} requests per round. Requests/s = requests / wall time of the round; "
           "latency percentiles of each round, median over the rounds. Every server runs in a subprocess "
           "of its own on 127.0.0.1, started and warmed before the first round. Process split: the same "
           "for both sides where it matters: HTTP, decode and encode share one process and one GIL in "
           "the engine's server worker exactly as in the plain server; the engine's extra processes "
           "(the Transform worker, the supervisor) add a hop and give no parallelism, so the split is a "
           "cost for the engine, never an advantage.", "",
           "| variant | requests/s (median) | best | p50 latency (ms) | p99 latency (ms) "
           "| server CPU per request (ms) | client CPU per request (ms) | processes | rounds "
           "| engine / this (per-round range) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v in order:
        infos = [i for _, i in sorted(variants[v].items())]
        med = statistics.median(i["rate"] for i in infos)
        ratio = ""
        if v != "engine" and eng_med:
            ratio = f"**{eng_med / med:.2f}**{_range(_paired(variants, 'engine', v))}"
        out.append(f"| {IMAGE_LABELS.get(v, v)} | {_fmt(med)} | {_fmt(max(i['rate'] for i in infos))} "
                   f"| {statistics.median(i['p50_ms'] for i in infos):.1f} "
                   f"| {statistics.median(i['p99_ms'] for i in infos):.1f} "
                   f"| {_median_of(infos, 'server_cpu_ms')} | {_median_of(infos, 'client_cpu_ms')} "
                   f"| {infos[0].get('procs', '?')} "
                   f"| {len(infos)} | {ratio} |")
    return out + [""]


VIDEO_LABELS = {
    "server": "engine: VideoServer (HTTP /start of every file, poll /list and /get_msgs)",
    "input": "engine: VideoInput",
    "decode": "decode-only: PyAV decode + the engine's BGR conversion into one reused array, one thread per file",
    "decode_pyav": "decode-only, PyAV's one-liner frame.to_ndarray(format=\"bgr24\"), one thread per file",
}
VIDEO_SPAN = {
    "server": "first /start -> last frame at the sinks",
    "input": "first instance built (its file opened) -> last frame at the sinks",
    "decode": "first av.open -> last frame decoded",
    "decode_pyav": "first av.open -> last frame decoded",
}
VIDEO_MAX_OVERHEAD = 0.10
VIDEO_MIN_RATIO = {(640, 360): 0.8}  # frame size -> VideoServer / decode-only, the target at that size


def _video(benches: list[dict]) -> list[str]:
    sizes: list[tuple] = []
    for b in benches:
        size = tuple(b.get("extra_info", {}).get("size") or ())
        if b.get("group") == "video" and size not in sizes:
            sizes.append(size)
    blocks = [_video_block(_rounds(benches, "video", lambda i, z=z: tuple(i.get("size") or ()) == z)) for z in sizes]
    blocks = [b for b in blocks if b[0]]
    if not blocks:
        return []
    first = next(iter(next(iter(blocks[0][2].values())).values()))
    threads = first.get("codec_threads", "?")
    codec_threads = "FFmpeg's choice" if threads == 0 else threads
    out = ["## Video: N files decoded at once", "",
           f"{first.get('streams', '?')} H.264 files of each size, all at once (clips made by "
           f"tests/support/clips.make_clip); codec threads per stream: {codec_threads} in every variant. Each engine "
           "stream feeds its own subgraph instance, a sink that only counts (and checks the order of) the frames; "
           "engine startup is excluded. frames/s = all frames / the time span below. "
           "Overhead = 1 - engine / decode-only. CPU per frame: user + system time of every thread of the "
           "engine app (supervisor, both workers) over a server round, of the decode-only process over its "
           "timed span.", "",
           "| frames | variant | timed span | frames/s (median) | best | rounds | CPU per frame (ms) "
           "| engine / decode-only (per-round range) | overhead |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for rows, block_verdicts, _ in blocks:
        out += rows
        verdicts += block_verdicts
    out.append("")
    if verdicts:
        out += ["Targets:", "", *verdicts, ""]
    return out


def _video_block(variants: dict) -> tuple[list[str], list[str], dict]:
    """The rows and verdicts of one frame size."""
    if not variants:
        return [], [], variants
    order = [v for v in VIDEO_LABELS if v in variants] + [v for v in variants if v not in VIDEO_LABELS]
    first = next(iter(variants[order[0]].values()))
    w, h = first.get("size", ["?", "?"])
    what = f"{w}x{h}, {first.get('frames_per_file', '?')} per file"
    med = {v: statistics.median(i["rate"] for i in variants[v].values()) for v in order}
    base = med.get("decode")
    rows, verdicts = [], []
    pyav = med.get("decode_pyav")
    for v in order:
        rates = [i["rate"] for _, i in sorted(variants[v].items())]
        ratio = overhead = ""
        if not v.startswith("decode") and base:
            r = med[v] / base
            ratio = f"**{r:.2f}**{_range(_paired(variants, v, 'decode'))}"
            overhead = f"**{100 * (1 - r):.0f}%**"
            verdict = "met" if 1 - r <= VIDEO_MAX_OVERHEAD else "MISSED"
            also = f" (vs PyAV's to_ndarray loop: {100 * (1 - med[v] / pyav):.1f}%)" if pyav else ""
            verdicts.append(f"- video {v} {w}x{h}: engine overhead {100 * (1 - r):.1f}% vs decode-only, target <= "
                            f"{100 * VIDEO_MAX_OVERHEAD:.0f}%: **{verdict}**{also}")
            floor = VIDEO_MIN_RATIO.get((w, h))
            if v == "server" and floor is not None:
                verdicts.append(f"- video server {w}x{h}: engine / decode-only = {r:.3f}, target >= {floor}: "
                                f"**{'met' if r >= floor else 'MISSED'}**")
        rows.append(f"| {what if v == order[0] else ''} | {VIDEO_LABELS.get(v, v)} | {VIDEO_SPAN.get(v, '')} "
                    f"| {_fmt(med[v])} frames/s | {_fmt(max(rates))} | {len(rates)} "
                    f"| {_median_of(list(variants[v].values()), 'cpu_ms_per_frame', 3)} | {ratio} | {overhead} |")
    return rows, verdicts, variants


CLASSIFY_LABELS = {
    "engine": "engine: ImageServer -> BatchClassify x{cloned} ({threads} thread each, batch_recv({max_batch}, "
              "{wait_ms} ms), batches {inference}) -> ImageServer",
    "plain-sync": "plain FastAPI `def` route (thread pool), 2 classifiers x 1 thread",
    "plain-one": "plain FastAPI `def` route (thread pool), 1 classifier x 2 threads",
    "plain-async": "plain FastAPI `async def` route (inline on the loop), 2 threads",
}
CLASSIFY_TARGET = (1.3, 1.5)  # engine QPS >= 1.3x the best plain one, with p95 <= 1.5x its p95


def _classify_server(benches: list[dict]) -> list[str]:
    variants = _rounds(benches, "classify_server")
    if not variants:
        return []
    order = [v for v in CLASSIFY_LABELS if v in variants] + [v for v in variants if v not in CLASSIFY_LABELS]
    first = next(iter(variants[order[0]].values()))
    med = {v: {k: statistics.median(i[k] for i in variants[v].values()) for k in ("rate", "p50_ms", "p95_ms",
                                                                                   "p99_ms")} for v in order}
    eng = med.get("engine")
    out = ["## MobileNetV2 classification service (ImageServer + dynamic batching vs plain FastAPI)", "",
           f"{first.get('clients', '?')} concurrent clients in a closed loop POST a COCO photo "
           f"({first.get('photo', '?')}, {first.get('photo_bytes', 0) / 1024:.0f} KiB JPEG) and get the JSON top 5 of "
           f"`models/mobilenet_v2_1.0_224_fp32.onnx` (onnxruntime); {first.get('requests', '?')} requests per round, "
           "every answer checked. Both sides run the same decode, pre-processing, inference and top-k code "
           "(megflow_mp.models.Classifier), each server in a subprocess of its own, warmed before the first round. "
           "Requests/s = requests / wall time of the round; latency percentiles of each round, median over the "
           "rounds; CPU per request of the server's whole process tree and of the client.", "",
           "| variant | requests/s (median) | best | p50 (ms) | p95 (ms) | p99 (ms) | mean batch "
           "| server CPU per request (ms) | client CPU per request (ms) | processes | rounds "
           "| engine / this: requests/s (per-round range) | engine / this: p95 |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v in order:
        infos = [i for _, i in sorted(variants[v].items())]
        ratio = p95 = ""
        if v != "engine" and eng:
            ratio = f"**{eng['rate'] / med[v]['rate']:.2f}**{_range(_paired(variants, 'engine', v))}"
            p95 = f"{eng['p95_ms'] / med[v]['p95_ms']:.2f}"
        label = CLASSIFY_LABELS.get(v, v).format(**{k: first.get(k, "?") for k in (
            "cloned", "threads", "max_batch", "wait_ms", "inference")})
        out.append(f"| {label} | {_fmt(med[v]['rate'])} | {_fmt(max(i['rate'] for i in infos))} "
                   f"| {med[v]['p50_ms']:.1f} | {med[v]['p95_ms']:.1f} | {med[v]['p99_ms']:.1f} "
                   f"| {_median_of(infos, 'mean_batch')} | {_median_of(infos, 'server_cpu_ms')} "
                   f"| {_median_of(infos, 'client_cpu_ms')} | {infos[0].get('procs', '?')} | {len(infos)} "
                   f"| {ratio} | {p95} |")
    out.append("")
    plains = [v for v in order if v.startswith("plain")]
    if eng and plains:
        best = max(plains, key=lambda v: med[v]["rate"])
        q, l95 = eng["rate"] / med[best]["rate"], eng["p95_ms"] / med[best]["p95_ms"]
        ok = q >= CLASSIFY_TARGET[0] and l95 <= CLASSIFY_TARGET[1]
        out += ["Targets:", "",
                f"- classify_server: engine / best plain ({best}) = {q:.2f}x requests/s, p95 {l95:.2f}x; target "
                f">= {CLASSIFY_TARGET[0]}x with p95 <= {CLASSIFY_TARGET[1]}x: **{'met' if ok else 'MISSED'}**", ""]
    return out


def _net_rows(variants: dict, order: list[str], labels: dict, base: str | None, extra: tuple = ()) -> list[str]:
    """Rows of an app table: frames/s (median, best), rounds, CPU per frame, ``extra`` medians, and
    the ratio to ``base`` with the per-round range."""
    med = {v: statistics.median(i["rate"] for i in variants[v].values()) for v in order}
    rows = []
    for v in order:
        infos = [i for _, i in sorted(variants[v].items())]
        ratio = ""
        if base and v != base and base in variants:
            ratio = f"**{med[v] / med[base]:.2f}**{_range(_paired(variants, v, base))}"
        cells = " | ".join(_median_of(infos, k) for k in extra)
        rows.append(f"| {labels.get(v, v)} | {_fmt(med[v])} frames/s | {_fmt(max(i['rate'] for i in infos))} "
                    f"| {len(infos)} | {_median_of(infos, 'cpu_ms_per_frame')} | "
                    + (f"{cells} | " if extra else "") + f"{ratio} |")
    return rows


def _startup_note(variants: dict) -> str:
    walls = [i["wall"] for i in variants.get("startup", {}).values()]
    return f" The startup runs took {statistics.median(walls):.2f} s (median)." if walls else ""


def _det_classify(benches: list[dict]) -> list[str]:
    variants = _rounds(benches, "det_classify")
    order = [v for v in ("batch-8", "batch-1") if v in variants]
    if not order:
        return []
    first = next(iter(variants[order[0]].values()))
    w, h = first.get("size", ["?", "?"])
    labels = {"batch-8": "batching on: `max_batch = 8`, `wait_time = 20` (the app's defaults)",
              "batch-1": "batching off: `max_batch = 1`"}
    out = ["## simple_det_classify: the classifier's batch_recv on vs off", "",
           f"`configs/simple_det_classify/video_test.toml` (VideoInput) over {first.get('streams', '?')} clips of "
           f"{first.get('frames_per_file', '?')} frames, {w}x{h}, all at once; YOLOX-nano on every frame, "
           "MobileNetV2 on every crop, 1 thread each (the app's settings), the `.onnx` files, which fix N=1: a "
           "batch of crops runs as single inferences. frames/s = (frames - streams) / (wall of the run - wall "
           "of a run of the same app on one-frame clips, the same round); CPU per frame likewise, over the app's "
           "whole process tree." + _startup_note(variants), "",
           "| variant | frames/s (median) | best | rounds | CPU per frame (ms) | mean batch (frames) "
           "| objects per frame | this / batching off (per-round range) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    out += _net_rows(variants, order, labels, "batch-1", ("mean_batch", "objects_per_frame"))
    return out + [""]


BICYCLE_LABELS = {
    "engine": "engine: electric_bicycle, video_test.toml (VideoInput)",
    "detect": "plain: PyAV decode + the same YOLOX calls + IoU tracks, one process (video_detect.py)",
    "decode": "PyAV decode-only, one thread per file (video_decode.py)",
}


def _electric_bicycle(benches: list[dict]) -> list[str]:
    variants = _rounds(benches, "electric_bicycle")
    order = [v for v in ("engine", "detect", "decode") if v in variants]
    if "engine" not in order:
        return []
    first = next(iter(variants["engine"].values()))
    w, h = first.get("size", ["?", "?"])
    med = {v: statistics.median(i["rate"] for i in variants[v].values()) for v in order}
    out = ["## electric_bicycle over N files at once", "",
           f"{first.get('streams', '?')} clips of {first.get('frames_per_file', '?')} frames, {w}x{h}, all at once. "
           f"The app's defaults: YOLOX-nano `.onnx` on {first.get('threads', '?')} thread, `interval = "
           f"{first.get('interval', '?')}` (every 5th frame of each stream is detected), IoU tracks, `min_hits = 3`, "
           "alerts to a private redis-server. Engine frames/s = (frames - streams) / (wall of the run - wall of "
           "a run on one-frame clips, the same round); CPU per frame likewise, over the app's whole process tree. "
           "Baselines: frames / their own timed span, CPU of their process over it." + _startup_note(variants), "",
           "| variant | frames/s (median) | best | rounds | CPU per frame (ms) | engine / this (per-round range) |",
           "|---|---:|---:|---:|---:|---:|"]
    rows = _net_rows(variants, order, BICYCLE_LABELS, None)
    for k, v in enumerate(order):
        if v != "engine":
            rows[k] = rows[k][:-2] + f"**{med['engine'] / med[v]:.2f}**{_range(_paired(variants, 'engine', v))} |"
    out += rows + [""]
    verdicts = []
    for v in ("decode", "detect"):
        if v in med:
            over = 1 - med["engine"] / med[v]
            verdict = "met" if over <= VIDEO_MAX_OVERHEAD else "MISSED"
            target = (f", target <= {100 * VIDEO_MAX_OVERHEAD:.0f}%: **{verdict}**"
                      if v == "decode" else " (no target: the share of the engine itself)")
            verdicts.append(f"- electric_bicycle: engine overhead {100 * over:.1f}% vs {BICYCLE_LABELS[v]}{target}")
    return out + ["Targets:", "", *verdicts, ""] if verdicts else out


def _pooled(infos: list[dict], key: str, name: str) -> list[float]:
    return [ms for i in infos for ms in i[key][name]["all_ms"]]


def _models(benches: list[dict]) -> list[str]:
    entries = [b["extra_info"] for b in benches if b.get("group") == "models" and "backends" in b.get("extra_info", {})]
    if not entries:
        return []
    out = ["## megenginelite vs onnxruntime (the same networks)", "",
           "Latency of one inference (batch of 1, a real photo pre-processed by the model layer), in the "
           "benchmark process; the `.onnx` file on onnxruntime and the `.mge` file on megenginelite called "
           "alternately with the same thread count; median and p90 over all calls of all rounds.", "",
           "| network | threads | onnxruntime median (ms) | p90 | megenginelite median (ms) | p90 "
           "| megenginelite / onnxruntime (medians) | calls each |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    keys = []
    for e in entries:
        if (e["network"], e["threads"]) not in keys:
            keys.append((e["network"], e["threads"]))
    for network, threads in keys:
        infos = [e for e in entries if (e["network"], e["threads"]) == (network, threads)]
        ort, mge = _pooled(infos, "backends", "onnxruntime"), _pooled(infos, "backends", "megenginelite")
        out.append(f"| {network} | {threads} | {statistics.median(ort):.2f} | {_p90(ort):.2f} "
                   f"| {statistics.median(mge):.2f} | {_p90(mge):.2f} "
                   f"| **{statistics.median(mge) / statistics.median(ort):.2f}** | {len(ort)} |")
    return out + [""]


def _p90(values: list[float]) -> float:
    """The 0.9-quantile, linear between the closest ranks (as serving.percentile)."""
    return statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]


def _batching(benches: list[dict]) -> list[str]:
    entries = [b["extra_info"] for b in benches if b.get("group") == "batching" and "modes" in b.get("extra_info", {})]
    if not entries:
        return []
    out = ["## Real batches vs chunks (MobileNetV2 .onnx, N fixed to 1 in the file)", "",
           "`chunked`: the file as shipped, a batch of B runs as B inferences; `rebatched`: the same file with its "
           "batch axis made symbolic in memory (megflow_mp.models.rebatch, outputs checked equal to single runs), "
           "one inference per batch. B different photos, the two called alternately in the benchmark process. "
           "Wall time and process CPU time per image (median over the calls; CPU summed over them).", "",
           "| batch | threads | chunked: ms per image | rebatched: ms per image | rebatched / chunked "
           "| chunked: CPU ms per image | rebatched: CPU ms per image |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    keys = []
    for e in entries:
        if (e["batch"], e["threads"]) not in keys:
            keys.append((e["batch"], e["threads"]))
    for batch, threads in sorted(keys, key=lambda k: (k[1], k[0])):
        infos = [e for e in entries if (e["batch"], e["threads"]) == (batch, threads)]
        chunk, whole = (statistics.median(_pooled(infos, "modes", m)) for m in ("chunked", "rebatched"))
        cpu = {m: statistics.median(i["modes"][m]["cpu_ms"] for i in infos) for m in ("chunked", "rebatched")}
        out.append(f"| {batch} | {threads} | {chunk:.2f} | {whole:.2f} | **{whole / chunk:.2f}** "
                   f"| {cpu['chunked']:.2f} | {cpu['rebatched']:.2f} |")
    return out + [""]


def _live_view(benches: list[dict]) -> list[str]:
    """Live view (bench_live_view.py): latency in chromium, bitrate vs MJPEG, encoding CPU vs a plain
    PyAV encode loop, all in one run."""
    rounds = _rounds(benches, "live_view")
    live, plain, mjpeg = (list(rounds.get(v, {}).values()) for v in ("live", "plain_encode", "mjpeg"))
    if not live:
        return []
    med = lambda infos, key: statistics.median(i[key] for i in infos)  # noqa: E731
    out = ["## Live view in the browser (720p30, Visualize -> fMP4 over HTTP -> Chromium)", "",
           "The same rendered frames: the live view watched in headless Chromium (latency = when Chromium was "
           "to show a frame minus when the graph drew its time code into it); the same frames through PyAV's "
           "libx264 in a plain loop (same settings); the same frames as JPEG (an MJPEG stream's bytes). "
           "Encoding CPU of the live view = the server worker's CPU per frame watched minus not watched.", "",
           "| variant | latency p50 (ms) | latency max (ms) | kbit/s | encoding CPU per frame (ms) | rounds |",
           "|---|---:|---:|---:|---:|---:|",
           f"| live view | {med(live, 'latency_p50_ms'):.0f} | {max(i['latency_max_ms'] for i in live):.0f} "
           f"| {med(live, 'kbit_per_s'):,.0f} | {med(live, 'encode_cpu_ms_per_frame'):.2f} | {len(live)} |"]
    if plain:
        out.append(f"| plain PyAV encode loop | | | {med(plain, 'kbit_per_s'):,.0f} "
                   f"| {med(plain, 'encode_cpu_ms_per_frame'):.2f} | {len(plain)} |")
    if mjpeg:
        out.append(f"| MJPEG (JPEG per frame) | | | {med(mjpeg, 'kbit_per_s'):,.0f} | | {len(mjpeg)} |")
    out += ["", "Targets:", ""]
    worst = max(i["latency_max_ms"] for i in live)
    out.append(f"- latency: max {worst:.0f} ms, target <= 1000 ms: **{'met' if worst <= 1000 else 'MISSED'}**")
    if mjpeg:
        ratio = med(live, "kbit_per_s") / med(mjpeg, "kbit_per_s")
        out.append(f"- bitrate: live / MJPEG = {ratio:.3f} (a small fraction)")
    if plain:
        ratio = med(live, "encode_cpu_ms_per_frame") / med(plain, "encode_cpu_ms_per_frame")
        out.append(f"- encoding CPU: live / plain loop = {ratio:.2f}, target <= 1.0: "
                   f"**{'met' if ratio <= 1.0 else 'MISSED'}**")
    return out + [""]


def _cameras(benches: list[dict]) -> list[str]:
    """Cameras per machine (bench_cameras.py): per resolution the most live cameras the engine and the
    plain program held in real time, and every step of both ramps."""
    infos = [b["extra_info"] for b in benches if b.get("group") == "cameras" and "steps" in b.get("extra_info", {})]
    if not infos:
        return []
    first = infos[0]
    out = ["## Cameras per machine (live RTSP, YOLOX-nano, interval 5)", "",
           f"N RTSP cameras ({first['fps']} fps H.264, GStreamer's server looping a clip of a motorbike: no encoding) "
           f"through YOLOX-nano (onnxruntime, 1 thread, every {first['interval']}th frame: electric_bicycle's "
           "default), added one by one; each step settles "
           f"{first['settle_s']:g} s and is measured over {first['window_s']:g} s. A step holds when frames "
           "dropped <= 1%, every camera's p95 latency (decoded -> detector's result) <= 1 s and every camera "
           "decoded at >= 95% of its frame rate. engine: VideoServer + the shared Detect node "
           "(benchmarks/apps/cameras); plain: a decode thread and a detect thread per camera, a drop-oldest "
           "queue of 8 frames between them, one shared Detector (benchmarks/plain_cameras.py). Cores: CPU "
           "of the program's process tree over the window (the RTSP server not counted).", "",
           "| resolution | engine: cameras held | plain: cameras held | engine / plain |", "|---|---:|---:|---:|"]
    by = {(i["resolution"], i["variant"]): i for i in infos}
    resolutions = list(dict.fromkeys(i["resolution"] for i in infos))
    for res in resolutions:
        e, p = by.get((res, "engine")), by.get((res, "plain"))
        fmt = lambda i: "-" if i is None else f"{i['held']}{'+' if i.get('capped') else ''}"  # noqa: E731
        ratio = f"{e['held'] / p['held']:.2f}" if e and p and p["held"] else "-"
        out.append(f"| {res} | {fmt(e)} | {fmt(p)} | {ratio} |")
    out.append("")
    for res in resolutions:
        steps = {v: {s["cameras"]: s for s in by[(res, v)]["steps"]} for v in ("engine", "plain") if (res, v) in by}
        ns = sorted({n for st in steps.values() for n in st})
        out += [f"{res}, every step (drop %, p95 ms, cores; *: the step that did not hold):", "",
                "| cameras | engine drop % | engine p95 ms | engine cores | plain drop % | plain p95 ms | plain cores |",
                "|---:|---:|---:|---:|---:|---:|---:|"]
        for n in ns:
            cells = []
            for v in ("engine", "plain"):
                s = steps.get(v, {}).get(n)
                if s is None:
                    cells += ["", "", ""]
                    continue
                mark = "" if s["held"] else "*"
                p95 = "-" if s["p95_ms"] is None else f"{s['p95_ms']:.0f}"
                cells += [f"{s['drop_pct']:.1f}{mark}", f"{p95}{mark}", f"{s['cores']:.2f}"]
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        why = [f"{v}: {st[max(st)]['why']}" for v, st in steps.items() if st and not st[max(st)]["held"]]
        out += ["", f"Ended by: {'; '.join(why) if why else 'the cap'}.", ""]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write benchmarks/RESULTS.md from a pytest-benchmark JSON file.")
    p.add_argument("json", nargs="?", default=str(ROOT / ".benchmarks" / "bench.json"))
    p.add_argument("-o", "--output", default=str(HERE / "RESULTS.md"))
    args = p.parse_args(argv)
    try:
        data = json.loads(Path(args.json).read_text())
    except (OSError, ValueError) as exc:
        print(f"report.py: cannot read {args.json}: {exc}", file=sys.stderr)
        return 1
    text = render(data)
    Path(args.output).write_text(text)
    print(text)
    print(f"(written to {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
