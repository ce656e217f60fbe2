"""Sinks: deliver a graph's messages to the outside (a web hook, an MQTT broker, a redis stream, a
JSON-lines file) at least once, in order per stream, through a bounded disk spool.

* :mod:`.contract`: what is delivered (``stream``, ``seq``, ``ts``, ``message``, ``id``) and the
  per-stream ``seq`` kept across restarts.
* :mod:`.config`: the arguments every sink takes, ``env:`` / ``file:`` secrets, one-line errors.
* :mod:`.outlet`: spool + delivery thread + retries (capped exponential backoff, full jitter) + metrics.
* :mod:`.destination` and one module per destination: :mod:`.webhook`, :mod:`.mqtt`,
  :mod:`.redis_stream`, :mod:`.jsonl`.
* :mod:`.node`: the node class the registered types (``megflow_mp.nodes.*_sink``) derive from.
"""

from .config import Secret, SinkConfigError, resolve_secret
from .contract import GAP, SeqBook, make_record
from .outlet import backoff

__all__ = ["GAP", "Secret", "SeqBook", "SinkConfigError", "backoff", "make_record", "resolve_secret"]
