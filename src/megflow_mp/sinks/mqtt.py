"""MqttSink's destination: one MQTT message per record, QoS 1, on the topic its template gives.

Accepted: the broker's PUBACK of every message of the batch within ``timeout`` seconds. The client
(paho-mqtt) connects on the first batch and reconnects by itself; while it is not connected a batch
fails at once (and is retried by the outlet). A message paho had sent when the connection broke
may reach the broker twice: at-least-once, the ``id`` tells them apart.
"""

from __future__ import annotations

import os
import time

from .destination import Destination, template


class Mqtt(Destination):
    kind = "MqttSink"

    def __init__(self, a, common, node_id: str):
        super().__init__()
        self.host = a.string("host", "127.0.0.1")
        self.port = a.number("port", 1883, least=1, integer=True)
        if self.port > 65535:
            raise a.error("port", f"not a port number: {self.port}")
        self.topic = template(a, "topic", a.string("topic", "megflow/{node}/{stream}"))
        for bad in ("+", "#"):
            if bad in a.args.get("topic", ""):
                raise a.error("topic", f"a topic to publish on cannot hold the wildcard {bad!r}")
        self.username = a.secret("username")
        self.password = a.secret("password")
        if self.password is not None and self.username is None:
            raise a.error("password", "given without a username")
        self.secrets += [self.username, self.password]
        self.keepalive = a.number("keepalive", 30, least=5, integer=True)
        self.client_id = a.string("client_id", f"megflow-{node_id.replace('/', '-')}-{os.getpid()}")
        self.node_id, self.timeout, self.retry_max = node_id, common.timeout, common.retry_max
        self.shown = f"mqtt://{self.host}:{self.port} topic {a.args.get('topic', 'megflow/{node}/{stream}')}"
        self.client = None

    def _connect(self):
        import paho.mqtt.client as mqtt

        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv311)
        if self.username is not None:
            client.username_pw_set(self.username.value, self.password.value if self.password else None)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(self.retry_max)))
        client.max_inflight_messages_set(1000)
        client.connect_async(self.host, self.port, keepalive=self.keepalive)
        client.loop_start()
        self.client = client

    def send(self, records, payloads) -> None:
        if self.client is None:
            self._connect()
            deadline = time.monotonic() + self.timeout
            while not self.client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.01)
        if not self.client.is_connected():
            raise ConnectionError(f"not connected to {self.host}:{self.port}")
        infos = [self.client.publish(self.topic(r["stream"], self.node_id), p, qos=1)
                 for r, p in zip(records, payloads)]
        deadline = time.monotonic() + self.timeout
        for info in infos:
            if info.rc != 0:
                raise ConnectionError(f"publish refused (paho rc {info.rc})")
            while not info.is_published():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no PUBACK within {self.timeout:g} s")
                info.wait_for_publish(min(left, 0.5))

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
