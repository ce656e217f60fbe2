"""RedisStreamSink's destination: an ``XADD key MAXLEN ~ maxlen * id <id> data <record JSON>`` per
record, a batch in one pipeline (no transaction).

Accepted: redis answered every XADD of the batch with an entry id. The entry's fields are ``id``
(the idempotency key) and ``data`` (the record as JSON). ``MAXLEN ~`` lets redis trim the stream
to about ``maxlen`` entries (the oldest go).
"""

from __future__ import annotations

import urllib.parse

from .destination import Destination, template


class RedisStream(Destination):
    kind = "RedisStreamSink"

    def __init__(self, a, common, node_id: str):
        super().__init__()
        raw = a.string("url", "redis://127.0.0.1:6379/0")
        url = a.secret("url").value if raw.startswith(("env:", "file:")) else raw
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise a.error("url", f"not a URL ({exc})") from None
        if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
            raise a.error("url", "expected redis://host[:port]/db, rediss://... or unix:///path")
        self.url = url
        self.password = a.secret("password")
        self.secrets += [self.password]
        if parts.password:
            from .config import Secret
            self.secrets.append(Secret(parts.password))
        self.key = template(a, "key", a.string("key", "megflow:{node}"))
        self.maxlen = a.number("maxlen", 100_000, least=1, integer=True)
        self.node_id, self.timeout = node_id, common.timeout
        where = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{port or 6379}{parts.path}"
        self.shown = f"{parts.scheme}://{where} key {a.args.get('key', 'megflow:{node}')}"
        self.client = None

    def send(self, records, payloads) -> None:
        if self.client is None:
            import redis

            kwargs = {"password": self.password.value} if self.password else {}
            self.client = redis.Redis.from_url(self.url, socket_timeout=self.timeout,
                                               socket_connect_timeout=self.timeout, **kwargs)
        pipe = self.client.pipeline(transaction=False)
        for r, p in zip(records, payloads):
            pipe.xadd(self.key(r["stream"], self.node_id), {"id": r["id"], "data": p}, maxlen=self.maxlen,
                      approximate=True)
        replies = pipe.execute()
        if len(replies) != len(records) or not all(replies):
            raise RuntimeError("XADD did not answer with an entry id")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
