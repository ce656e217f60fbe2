"""Every metric megflow-mp exports: name, type, labels, meaning (the README's table comes from here).

Labels: ``node`` is a node declaration as the graph picture names it (``graph/name``, ``@/name`` for
a shared top-level node); ``replica`` its process (0 .. cloned-1); ``stream`` a video stream's id on
its server (``node``); ``route`` an HTTP route template (``/analyze/{extra_data}``), never a raw
path, so that label sets stay bounded. The supervisor's own process is ``node="supervisor"``.
"""

from __future__ import annotations

from typing import NamedTuple


class Metric(NamedTuple):
    name: str  # counters without the ``_total`` suffix (the exposition adds it)
    kind: str  # counter, gauge or histogram
    labels: tuple[str, ...]
    help: str


NR = ("node", "replica")
ST = ("node", "replica", "stream")
# exec time of one call, seconds (a 1080p frame through a model: tens of ms; a pass-through: ~10 us)
EXEC_BUCKETS = (1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# age of a frame when its result leaves its stream's subgraph, seconds (real time: <= 1 s)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
# from a sink taking a message to its destination accepting it, seconds (spooled during an outage: long)
SINK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
HTTP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

METRICS = (
    Metric("megflow_node_envelopes_in", "counter", NR, "envelopes that arrived at the node's inputs"),
    Metric("megflow_node_envelopes_out", "counter", NR,
           "envelopes the node sent, one per receiving channel (a broadcast to two counts two)"),
    Metric("megflow_node_exec_seconds", "histogram", NR,
           "time of one exec() call less its waits for input and for output credit (the node's own work); "
           "sampled: up to 32 calls a second per replica"),
    Metric("megflow_node_queue_depth", "gauge", NR, "envelopes waiting in the node's input queues"),
    Metric("megflow_node_queue_capacity", "gauge", NR, "sum of the cap of the node's input channels"),
    Metric("megflow_node_backpressure_seconds", "counter", NR,
           "time the node's sends waited because a receiver's queue was full"),
    Metric("megflow_node_errors", "counter", NR, "exceptions raised by the node's exec (contained or not)"),
    Metric("megflow_node_restarts", "counter", NR, "times the replica's worker was started again (restart = N)"),
    Metric("megflow_node_instances", "gauge", NR,
           "node instances the replica hosts (one per subgraph instance that uses it)"),
    Metric("megflow_process_resident_memory_bytes", "gauge", NR, "resident set size of the process"),
    Metric("megflow_process_cpu_seconds", "counter", NR, "CPU time (user + system) of the process"),
    Metric("megflow_shm_mapped_bytes", "gauge", NR, "shared memory the process allocated (its own segments)"),
    Metric("megflow_shm_held_bytes", "gauge", NR, "bytes of its segments held by live arrays (in any process)"),
    Metric("megflow_stream_state", "gauge", ST + ("state",),
           "1 for the stream's state (starting, running, reconnecting, finished, stopped, error)"),
    Metric("megflow_stream_frames_decoded", "counter", ST, "frames decoded"),
    Metric("megflow_stream_frames_sent", "counter", ST, "frames sent into the stream's subgraph instance"),
    Metric("megflow_stream_frames_dropped", "counter", ST,
           "frames dropped because the pipeline was slower than a live source"),
    Metric("megflow_stream_frames_corrupt", "counter", ST,
           "packets the decoder refused and frames it marked corrupt: skipped, the stream goes on"),
    Metric("megflow_stream_fps", "gauge", ST, "decode rate over the last second"),
    Metric("megflow_stream_reconnects", "counter", ST, "reconnections of a live source"),
    Metric("megflow_stream_decode_seconds", "counter", ST, "time spent decoding and converting frames to BGR"),
    Metric("megflow_stream_viewers", "gauge", ST, "browsers watching the stream's live view (/view/{id})"),
    Metric("megflow_stream_latency_seconds", "histogram", ST,
           "age of a frame (from its decoding) when its result left the stream's subgraph"),
    Metric("megflow_http_requests", "counter", NR + ("route", "method", "status"),
           "HTTP requests answered by the node's front door"),
    Metric("megflow_http_request_seconds", "histogram", NR + ("route",),
           "time from a request's arrival to the start of its response"),
    Metric("megflow_http_requests_in_flight", "gauge", NR,
           "requests being served (open streaming responses included)"),
    Metric("megflow_sink_delivered", "counter", NR,
           "messages a sink's destination accepted (HTTP 2xx, MQTT PUBACK, XADD reply, write and fsync)"),
    Metric("megflow_sink_retries", "counter", NR, "failed deliveries of a sink's batch, each one retried"),
    Metric("megflow_sink_spooled_messages", "gauge", NR, "messages in a sink's spool, not yet accepted"),
    Metric("megflow_sink_dropped", "counter", NR,
           "messages a sink dropped from its full spool (spool_max_bytes; the oldest go)"),
    Metric("megflow_sink_delivery_seconds", "histogram", NR,
           "time from a sink taking a message to its destination accepting it"),
)
BY_NAME = {m.name: m for m in METRICS}
BUCKETS = {"megflow_node_exec_seconds": EXEC_BUCKETS, "megflow_http_request_seconds": HTTP_BUCKETS,
           "megflow_stream_latency_seconds": LATENCY_BUCKETS, "megflow_sink_delivery_seconds": SINK_BUCKETS}
STREAM_METRICS = tuple(m.name for m in METRICS if m.name.startswith("megflow_stream_"))


def markdown_table() -> str:
    """The table of metrics as Markdown (name, type, labels, meaning)."""
    rows = ["| name | type | labels | meaning |", "|---|---|---|---|"]
    for m in METRICS:
        name = m.name + ("_total" if m.kind == "counter" else "")
        rows.append(f"| `{name}` | {m.kind} | {', '.join(m.labels)} | {m.help} |")
    return "\n".join(rows) + "\n"
