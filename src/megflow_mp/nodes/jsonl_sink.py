"""JsonlSink: every message appended as one line of JSON to a file, at least once, in order per stream.

Each line is the delivered object of every sink (``stream``, ``seq``, ``ts``, ``message``, ``id``;
see WebhookSink). A batch is one write, accepted once written and, with ``fsync = "always"``,
fsync'd. Spool, retries, ``seq`` across restarts, errors, the pass-through ``out`` and the common
arguments: as WebhookSink.

Args: ``path`` (required; its directory is created), ``max_bytes`` (rotate when a batch would take
the file past it: ``<path>.1`` ... ``<path>.<backups>``; 0: never; default 64 MiB), ``backups``
(rotated files kept, default 5), ``fsync`` (``"always"``, the default, or ``"never"``), ``batch``
(lines per write, default 100), ``linger_ms`` (default 0), and every sink's arguments
(``timeout``, ``retry_min``, ``retry_max``, ``spool_dir``, ``spool_max_bytes``, ``spool_fsync``,
``drain_timeout``).
"""

from ..registry import register
from ..sinks.args import JsonlSinkArgs
from ..sinks.jsonl import JsonlFile
from ..sinks.node import SinkNode


@register(name="JsonlSink", inputs=["inp"], outputs=["out"], args=JsonlSinkArgs)
class JsonlSink(SinkNode):
    KIND, DESTINATION, BATCH = "JsonlSink", JsonlFile, 100
