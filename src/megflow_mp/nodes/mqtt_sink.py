"""MqttSink: every message published to an MQTT broker (QoS 1), at least once, in order per stream.

One MQTT message per message, its payload the delivered object of every sink (``stream``, ``seq``,
``ts``, ``message``, ``id``: see WebhookSink), accepted on the broker's PUBACK. The topic is a
template of ``{stream}`` (the stream id, ``none`` without one) and ``{node}`` (the node's name).
Spool, retries, ``seq`` across restarts, errors, the pass-through ``out`` and the common arguments:
as WebhookSink.

Args: ``host`` (default 127.0.0.1), ``port`` (default 1883), ``topic`` (default
``"megflow/{node}/{stream}"``; no ``+`` or ``#``), ``username`` and ``password`` (``env:NAME`` /
``file:/path`` or the text), ``client_id`` (default ``megflow-<node>-<pid>``), ``keepalive`` (s,
default 30), ``batch`` (messages in flight at once, default 100), ``linger_ms`` (default 0), and
every sink's arguments (``timeout``, ``retry_min``, ``retry_max``, ``spool_dir``,
``spool_max_bytes``, ``spool_fsync``, ``drain_timeout``).
"""

from ..registry import register
from ..sinks.args import MqttSinkArgs
from ..sinks.mqtt import Mqtt
from ..sinks.node import SinkNode


@register(name="MqttSink", inputs=["inp"], outputs=["out"], args=MqttSinkArgs)
class MqttSink(SinkNode):
    KIND, DESTINATION, BATCH = "MqttSink", Mqtt, 100
