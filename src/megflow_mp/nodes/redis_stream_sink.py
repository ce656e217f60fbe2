"""RedisStreamSink: every message added to a redis stream (XADD, MAXLEN ~ N), at least once, in order
per stream.

One stream entry per message with the fields ``id`` (the idempotency key) and ``data`` (the
delivered object of every sink as JSON: ``stream``, ``seq``, ``ts``, ``message``, ``id``; see
WebhookSink); a batch is one pipeline, accepted when redis answered each XADD. Spool, retries,
``seq`` across restarts, errors, the pass-through ``out`` and the common arguments: as WebhookSink.

Args: ``url`` (default ``redis://127.0.0.1:6379/0``; ``rediss://`` for TLS, ``unix:///path``; may
be ``env:NAME``), ``password`` (``env:`` / ``file:`` or the text), ``key`` (the redis key, a
template of ``{stream}`` and ``{node}``; default ``"megflow:{node}"``), ``maxlen`` (about how many
entries redis keeps, default 100000), ``batch`` (default 100), ``linger_ms`` (default 0), and every
sink's arguments (``timeout``, ``retry_min``, ``retry_max``, ``spool_dir``, ``spool_max_bytes``,
``spool_fsync``, ``drain_timeout``).
"""

from ..registry import register
from ..sinks.args import RedisStreamSinkArgs
from ..sinks.node import SinkNode
from ..sinks.redis_stream import RedisStream


@register(name="RedisStreamSink", inputs=["inp"], outputs=["out"], args=RedisStreamSinkArgs)
class RedisStreamSink(SinkNode):
    KIND, DESTINATION, BATCH = "RedisStreamSink", RedisStream, 100
