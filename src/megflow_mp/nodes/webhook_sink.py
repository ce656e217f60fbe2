"""WebhookSink: every message POSTed as JSON to a URL, at least once, in order per stream.

What is delivered (every sink): one object per message, ``{"stream": <envelope.from_addr or null>,
"seq": <per-stream int, monotonic across restarts>, "ts": <float>, "message": <msg: dict, list or
string as sent, anything else its str()>, "id": "<node>/<stream>/<seq>"}`` (``id``: the idempotency
key, the same on every retry). A body is a JSON array of up to ``batch`` of them; any 2xx answer
accepts it.

How (every sink): ``exec`` appends the message to the node's disk spool (a log of segment files,
one write a message) and returns (the pipeline never waits on the destination); a thread delivers
the spool oldest first and acknowledges a message only once the destination accepted it, retrying failures forever with capped exponential backoff
and full jitter. While the destination is down messages wait in the spool, bounded by
``spool_max_bytes``: past it the oldest are dropped (counted in ``megflow_sink_dropped_total``,
logged once per burst). The spool and the next ``seq`` of each stream survive a kill of the app: a
new start delivers what was left and continues each stream's ``seq`` after a gap (under 1000).
An unreachable destination at start is one WARNING, not a failed start; a bad argument (a
malformed URL, a missing ``env:`` variable) fails the start with one line naming the node and the
argument. The envelope goes on through ``out`` unchanged (leave it unconnected at the end of a
chain). Per stream (inside a stream subgraph) or shared (top-level ``[[nodes]]``): either way one
spool and one ordered delivery per node.

Args: ``url`` (required; ``http://`` or ``https://``), ``headers`` (a table of extra headers,
values ``env:NAME`` / ``file:/path`` for secrets: ``headers = { Authorization = "env:HOOK_TOKEN" }``),
``secret`` (an HMAC-SHA256 key, ``env:``/``file:``: adds ``X-Megflow-Signature: sha256=<hex of the
HMAC of the body>``), ``signature_header`` (its name), ``batch`` (messages per POST, default 1),
``linger_ms`` (how long a batch may wait to fill, default 0).
Every sink also takes: ``timeout`` (s per delivery attempt, default 5), ``retry_min`` / ``retry_max``
(s, the backoff's first cap and its cap, default 0.1 and 10), ``spool_dir`` (the node's spool
directory; default ``$XDG_STATE_HOME/megflow-mp/spool/<config>-<hash>/<node>``, or
``<--state-dir>/spool/<node>``), ``spool_max_bytes`` (default 64 MiB), ``spool_fsync`` (fsync each
spooled message: survives a power loss, costs an fdatasync a message; default false: survives a kill),
``drain_timeout`` (s to deliver what is left when the input ends, default 5; the rest stays
spooled for the next start). Secrets are never shown (logs, errors, metrics, the dashboard).
Metrics: ``megflow_sink_delivered_total``, ``megflow_sink_retries_total``,
``megflow_sink_spooled_messages``, ``megflow_sink_dropped_total``, ``megflow_sink_delivery_seconds``.
"""

from ..registry import register
from ..sinks.args import WebhookSinkArgs
from ..sinks.node import SinkNode
from ..sinks.webhook import Webhook


@register(name="WebhookSink", inputs=["inp"], outputs=["out"], args=WebhookSinkArgs)
class WebhookSink(SinkNode):
    KIND, DESTINATION = "WebhookSink", Webhook
