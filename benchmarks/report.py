"""Turn the pytest-benchmark JSON of ``make bench`` into ``benchmarks/RESULTS.md`` (and print it).

Usage: ``python benchmarks/report.py [BENCH_JSON] [-o OUT.md]``; defaults: ``.benchmarks/bench.json``
and ``benchmarks/RESULTS.md``.

Each benchmark entry is one round of one variant (rounds of a group's variants run interleaved);
rates are the ones the sinks measured themselves (``extra_info``). The table shows per variant the
median and the best round, and the engine's median divided by each baseline's median, plus the
range of the round-by-round ratios (engine round k / baseline round k, neighbours in time).

The server benchmarks have tables of their own: ``image_server`` (requests/s and latency of the
ImageServer round trip next to plain FastAPI + uvicorn servers) and ``video`` (frames/s of
VideoServer and VideoInput over N files next to PyAV decode-only, and the engine's overhead).
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
               {"engine": "engine", "raw": "raw limit: shm ring + Pipe of slot indices",
                "queue": "multiprocessing.Queue"},
               {"raw": 0.9}, None),
    "envelopes": ('small envelopes `{"i": i}`, source -> Transform -> sink',
                  {"engine": "engine", "pipe": "Connection.send per message"},
                  {}, 100_000),
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


def _rounds(benches: list[dict], group: str) -> dict[str, dict[int, dict]]:
    """variant -> round -> extra_info, in the order the variants first appear."""
    out: dict[str, dict[int, dict]] = {}
    for b in benches:
        info = b.get("extra_info", {})
        if b.get("group") == group and "variant" in info:
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
    out += _video(benches)
    return "\n".join(out)


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
    "decode": "PyAV decode-only (to_ndarray bgr24), one thread per file",
}
VIDEO_SPAN = {
    "server": "first /start -> last frame at the sinks",
    "input": "first instance built (its file opened) -> last frame at the sinks",
    "decode": "first av.open -> last frame decoded",
}
VIDEO_MAX_OVERHEAD = 0.10


def _video(benches: list[dict]) -> list[str]:
    variants = _rounds(benches, "video")
    if not variants:
        return []
    order = [v for v in VIDEO_LABELS if v in variants] + [v for v in variants if v not in VIDEO_LABELS]
    first = next(iter(variants[order[0]].values()))
    w, h = first.get("size", ["?", "?"])
    threads = first.get("codec_threads", "?")
    codec_threads = "FFmpeg's choice" if threads == 0 else threads
    med = {v: statistics.median(i["rate"] for i in variants[v].values()) for v in order}
    base = med.get("decode")
    out = ["## Video: N files decoded at once", "",
           f"{first.get('streams', '?')} H.264 files of {first.get('frames_per_file', '?')} frames, {w}x{h}, all "
           f"at once (clips made by tests/support/clips.make_clip); codec threads per stream: "
           f"{codec_threads} in every variant. Each engine stream "
           "feeds its own subgraph instance, a sink that only counts (and checks the order of) the frames; "
           "engine startup is excluded. frames/s = all frames / the time span below. "
           "Overhead = 1 - engine / decode-only. CPU per frame: user + system time of every thread of the "
           "engine app (supervisor, both workers) over a server round, of the decode-only process over its "
           "timed span.", "",
           "| variant | timed span | frames/s (median) | best | rounds | CPU per frame (ms) "
           "| engine / decode-only (per-round range) | overhead |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for v in order:
        rates = [i["rate"] for _, i in sorted(variants[v].items())]
        ratio = overhead = ""
        if v != "decode" and base:
            r = med[v] / base
            ratio = f"**{r:.2f}**{_range(_paired(variants, v, 'decode'))}"
            overhead = f"**{100 * (1 - r):.0f}%**"
            verdict = "met" if 1 - r <= VIDEO_MAX_OVERHEAD else "MISSED"
            verdicts.append(f"- video {v}: engine overhead {100 * (1 - r):.1f}% vs decode-only, target <= "
                            f"{100 * VIDEO_MAX_OVERHEAD:.0f}%: **{verdict}**")
        out.append(f"| {VIDEO_LABELS.get(v, v)} | {VIDEO_SPAN.get(v, '')} | {_fmt(med[v])} frames/s "
                   f"| {_fmt(max(rates))} | {len(rates)} "
                   f"| {_median_of(list(variants[v].values()), 'cpu_ms_per_frame', 3)} | {ratio} | {overhead} |")
    out.append("")
    if verdicts:
        out += ["Targets:", "", *verdicts, ""]
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
