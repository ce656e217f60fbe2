"""The figures of a reliability run and the RELIABILITY.md they make.

A test adds one row per scenario: what was tried, how many cases, how many held (the expected
outcome), how many were lost (a 5xx, a dead worker, a traceback, a hang, ...) and notes (the
first example of each loss). Each row names the command that reproduces it: the test's own id
at the size of the run.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from tests.reliability.sizes import SIZE, size

ROOT = Path(__file__).resolve().parents[2]


# What this suite found, where it was fixed and the regression test that keeps it fixed
# (tests/reliability/test_regressions.py unless named otherwise).
FOUND = [
    ("HTTP fuzzing (request rate)", "front door connections kept Nagle on (socket made with proto 0): every request "
     "after the first on a keep-alive connection waited ~40 ms for a delayed ACK", "frontdoor.py",
     "test_front_door_connections_have_nagle_off"),
    ("hostile /start paths", "a NUL byte, a name longer than the file system takes or a symlink loop in the path: "
     "500 (check_url raised)", "nodes/video_server.py", "test_video_server_refuses_unusable_paths_instead_of_failing"),
    ("hostile /start paths", "a file under allow_dirs named like an FFmpeg protocol (concat:/elsewhere/x.mp4) passed "
     "the check and FFmpeg read the file outside allow_dirs: files are now opened by their resolved path",
     "nodes/video_server.py", "test_video_server_opens_a_file_by_its_resolved_path"),
    ("HTTP fuzzing (schema conformance)", "POST /start/ with a newline in the percent-encoded URL matched no route "
     "(starlette's path parameter stops at a newline): 404, which /start does not document",
     "nodes/video_server.py", "test_video_start_with_a_newline_in_the_path_is_refused_not_404"),
    ("hostile clients (hang-ups)", "a client closing the connection mid-body: 'Exception in ASGI application' and a "
     "traceback in the log for each", "nodes/http_routes.py", "test_read_body_answers_a_client_that_hung_up_mid_body"),
    ("config fuzzing", "graphs containing each other (g -> h -> g) passed check; run died with RecursionError",
     "graph.py", "test_graphs_that_contain_each_other_are_refused"),
    ("config fuzzing", "cloned = 1000000000 passed; check built a list of a billion processes (MemoryError)",
     "config/schema.py", "test_a_huge_cloned_is_refused_before_anything_is_planned"),
    ("config fuzzing", "include = [\"/dev/zero\"] was read until memory ran out", "config/loader.py",
     "test_an_endless_include_is_refused_instead_of_read_forever"),
    ("config fuzzing", "a file that is not UTF-8: the error gave the codec's byte offset, no line",
     "config/loader.py", "test_a_config_that_is_not_utf8_is_refused_at_its_line"),
    ("config fuzzing", "a TOML error at the end of the file ('at end of document') named no line",
     "config/loader.py", "test_a_toml_error_at_the_end_of_the_file_names_its_line"),
    ("config fuzzing", "a key with a tab or U+0085 was printed raw in the error path: the one error line became "
     "several", "config/schema.py", "test_an_odd_key_is_quoted_in_the_error_path"),
    ("config fuzzing", "node names with control characters, whitespace or ':' (and graph names with '|') were "
     "accepted; the error came later and listed them raw", "config/schema.py",
     "test_a_node_name_that_no_port_can_name_is_refused_at_the_name"),
    ("config fuzzing (--dynamic variables)", "a template that renders to two different documents in templar and "
     "jinja2 was refused with no line", "config/loader.py",
     "test_a_template_that_means_two_things_names_the_line_where_they_differ"),
    ("config fuzzing (looking past check)", "a server's port = -1 or 70000 (or a NUL in host): run failed with a "
     "traceback of OverflowError from socket.bind; now 'cannot listen on 127.0.0.1:-1: ...'", "frontdoor.py",
     "test_a_server_address_out_of_range_is_a_clear_error"),
    ("HTTP fuzzing (the real request afterwards)", "in the head-size limit while it was being written: a body over "
     "64 kB was answered 431 and an 8 kB header 400; fixed before it was committed (6d2af5b)", "http_protocol.py",
     "test_http_hostile.py: the 1 kB to 32 kB header row, and every real-request check"),
    ("redis outage", "electric_bicycle alerts and cat_finder registrations and notifications were held in memory "
     "while redis was down (cat_finder's not at all: registrations answered an error, notifications were dropped) "
     "and lost when the app was killed; now spooled to disk (fsync'd, bounded) and written once each by id",
     "spool.py, electric_bicycle/redis_list.py, cat_finder/features.py",
     "test_redis_outage.py: test_writes_survive_redis_and_app_kills_exactly_once, "
     "test_a_write_delivered_but_still_spooled_is_not_written_twice; tests/unit/test_spool.py"),
    ("stream churn", "GET /list and GET /view iterated the streams while /start (another thread) added one: 500 "
     "'dictionary changed size during iteration' a few times per 100 concurrent start/stop cycles",
     "nodes/video_server.py, live/routes.py", "test_video_list_answers_while_streams_start_on_other_threads"),
    ("cameras (stall)", "the read timeout that detects a camera which keeps its socket open and sends nothing was "
     "one per VideoServer node; now also per stream: POST /start/{url}?read_timeout=S", "nodes/video_server.py",
     "test_cameras.py: test_server_killed_and_restarted_and_a_stalled_camera"),
    ("stream churn", "the inbox that brings a stream's results back stayed in its worker's channel table whenever "
     "results were still queued when the stream's instance finished (most streams): about 1 kB per stream, for "
     "the worker's life", "runtime/channels.py, runtime/worker.py",
     "test_an_ended_streams_results_inbox_leaves_the_worker"),
    ("stream churn", "a stream resolved its done future with itself (stream -> future -> stream): every ended "
     "stream, its messages and live channel waited for a full cyclic collection", "video/stream.py",
     "test_an_ended_stream_is_freed_without_the_cycle_collector"),
    ("stream churn", "the metrics sampler held every stream object it had seen (messages, live channel, futures) "
     "for the 60 s retention; now only an ended stream's last numbers", "observe/sampler.py",
     "test_metrics_keep_only_the_numbers_of_an_ended_stream"),
    ("stream churn", "glibc kept what each stream's threads freed: free chunks stayed resident (no trim below a "
     "raised threshold) across 16 malloc arenas on 2 cores; the VideoServer worker's resident memory climbed "
     "with every stream started. Workers now trim the heap (malloc_trim) after an instance ends, and a decoding "
     "worker uses one arena per core (at least 4)", "runtime/malloc.py, runtime/worker.py, nodes/video_server.py, "
     "nodes/video_input.py", "test_churn.py: test_start_stop_churn_leaves_memory_processes_and_shared_memory_flat"),
    ("cameras (damaged RTP payloads)", "frames the decoder marked corrupt (concealed errors) were sent into the "
     "pipeline as pictures and nothing counted them or the packets it refused; now skipped and counted: "
     "GET /list's corrupt, megflow_stream_frames_corrupt", "video/reader.py, video/stream.py, nodes/video_server.py",
     "test_cameras.py: test_corrupt_packets_are_skipped_and_counted_and_the_stream_goes_on"),
    ("cameras kept (the app SIGKILLed and started again)", "a stream a client started while the declared streams "
     "were being started could be read back from the state file as recorded, refused as a name in use, and then "
     "forgotten: gone after the next restart (2 of 7 runs)", "nodes/video_server.py",
     "test_cameras_kept.py: test_cameras_come_back_after_the_app_or_its_detector_is_killed"),
    ("HTTP fuzzing (VideoServer)", "a stream id of non-ASCII digits ('\u00b2': str.isdigit is true, int() refuses) "
     "was a 500 on every route that takes an id", "video/spec.py",
     "tests/unit/test_stream_keeping.py: test_digits_in_a_route_are_megflow_ids_and_mixed_ids_sort"),
    ("HTTP fuzzing (VideoServer)", "POST /streams' body schema used a numeric exclusiveMinimum and null types, "
     "which OpenAPI 3.0 does not have: schemathesis could not generate requests for it", "video/spec.py",
     "test_http_fuzz.py: test_generated_requests_get_no_server_error"),
    ("stream churn", "the message log kept the ring and the next number of every stream after it left /list (and "
     "the numbers file every integer id): the door's memory grew 2.5% over 200 cycles", "video/messages.py",
     "tests/unit/test_messages.py: test_a_stream_that_left_the_server_leaves_its_ring_and_an_integer_id_its_number"),
]
LEFT = [
    "stream churn: an ended stream's metrics stay exported for 60 s (MEGFLOW_MP_METRICS_RETENTION), and each "
    "second's snapshot of them costs a few kB per stream: a server starting 100 streams a second holds a few "
    "MB more while that lasts (the churn row sets 1 s, as it sets a short /list history). "
    "MEGFLOW_MP_METRICS=0 does not switch metrics off under `megflow-mp run` (the command line's "
    "--no-metrics default overrides it), which is why an earlier look 'with metrics off' still had them.",
    "SIGKILL of the front door's worker: the requests in flight get no answer, their connections close. An answer "
    "is impossible there: that worker alone holds the listening socket and every accepted connection (the kill "
    "test looks in /proc just before each kill and reports it), so they go with it. Answering them would need "
    "another process to hold them (the supervisor owning the socket and the connections), not done.",
    "killing another worker with restart = 0 ends the app: the front door's worker is stopped with it and its "
    "requests in flight see their connection closed instead of a 503 (counted in the kill rows); that worker is "
    "alive until then, so a 503 is possible there, not done yet.",
    "uvicorn has no time limit on a request head or body: slow clients keep their connections (each holds a file "
    "descriptor) for as long as they trickle; they do not block other requests (the slowloris rows).",
]


@dataclass
class Row:
    section: str
    what: str
    tried: int
    held: int
    lost: int
    test: str
    notes: list[str] = field(default_factory=list)


@dataclass
class Figures:
    rows: list[Row] = field(default_factory=list)
    current: str = ""
    started: float = 0.0
    load_before: tuple = (0.0, 0.0, 0.0)

    def add(self, section: str, what: str, tried: int, held: int, lost: int, notes=()) -> Row:
        """Record one scenario of the running test; returns the row (for the test's asserts)."""
        row = Row(section, what, int(tried), int(held), int(lost), self.current, [str(n) for n in notes])
        self.rows.append(row)
        return row


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit(report: Path) -> str:
    """HEAD's short hash, marked when tracked files other than ``report`` (rewritten by the run) differ."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                f":(exclude){report.resolve()}"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def command(test: str) -> str:
    env = f"MEGFLOW_MP_RELIABILITY={SIZE}"
    return f"`{env} .venv/bin/python -m pytest -q '{test}'`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_report(figures: Figures, path: str | os.PathLike, exitstatus: int | None) -> None:
    """Write ``path`` (markdown) from ``figures``."""
    now = time.gmtime()
    load_after = os.getloadavg()
    took = time.time() - figures.started
    lost = sum(r.lost for r in figures.rows)
    s = size()
    lines = [
        "# Reliability",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', now)} on `{socket.gethostname()}` ({os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}), commit {_commit(Path(path))}; load average "
        f"{figures.load_before[0]:.2f} at the start, {load_after[0]:.2f} at the end (1-minute; other work shares "
        f"the machine); {took / 60:.1f} minutes.",
        "",
        f"Size `{SIZE}`: {s.http_requests:,} generated requests per front door, {s.config_cases:,} mutated configs "
        f"in-process + {s.config_subprocess} through a real `megflow-mp check` process, {s.slow_clients} slow "
        f"clients, {s.outage_writes:,} writes across redis outages, {s.kills} round(s) of SIGKILLs, "
        f"{s.overload_clients:,} concurrent clients, {s.churn_cycles:,} stream start/stop cycles, {s.cameras} "
        f"cameras, {s.corrupt_packets} damaged RTP packets. schemathesis {_version('schemathesis')}, "
        f"hypothesis {_version('hypothesis')}, uvicorn {_version('uvicorn')}, starlette {_version('starlette')}.",
        "",
        "Made by `make chaos` (`MEGFLOW_MP_RELIABILITY=full MEGFLOW_MP_RELIABILITY_REPORT=RELIABILITY.md "
        ".venv/bin/python -m pytest -q tests/reliability`); the same tests run small in `make test`. "
        "Each row names the command that reproduces it.",
        "",
        f"**Lost in total: {lost}** (the target is 0 everywhere); "
        + (f"pytest exit status {exitstatus}." if exitstatus is not None else "the run is still going (or was cut "
                                                                           "short): these are the tests done so far."),
    ]
    sections: dict[str, list[Row]] = {}
    for row in figures.rows:
        sections.setdefault(row.section, []).append(row)
    for section, rows in sections.items():
        lines += ["", f"## {section}", "", "| what was tried | tried | held | lost | reproduce |",
                  "|---|---:|---:|---:|---|"]
        for r in rows:
            lines.append(f"| {_cell(r.what)} | {r.tried:,} | {r.held:,} | {r.lost:,} | {command(r.test)} |")
        notes = [(r.what, n) for r in rows for n in r.notes]
        if notes:
            lines += [""] + [f"- {_cell(what)}: {_cell(n)}" for what, n in notes]
    lines += ["", "## Found by this suite", "",
              "Each fixed where the fault was, with a regression test (tests/reliability/test_regressions.py "
              "unless named):", "", "| found by | fault | fixed in | regression test |", "|---|---|---|---|"]
    lines += [f"| {by} | {_cell(what)} | `{where}` | `{test}` |" for by, what, where, test in FOUND]
    lines += ["", "Left as they are:", ""] + [f"- {text}" for text in LEFT]
    Path(path).write_text("\n".join(lines) + "\n")
