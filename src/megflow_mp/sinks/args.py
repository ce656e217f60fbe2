"""The declared arguments of the sink node types (:mod:`megflow_mp.nodeargs`).

``check`` and ``run`` refuse an argument a sink does not take, or one of the wrong type or out of
bounds, before the app starts; the reference and the config's JSON Schema show them. What needs the
environment or the network (``env:`` and ``file:`` secrets, a URL's form, a template's fields) is
checked when the node is built (:mod:`.config`, each destination), one line naming the argument.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..nodeargs import NodeArgs

SECRET = "'env:NAME', 'file:/path' or the text"


class SinkArgs(NodeArgs):
    """What every sink takes."""

    batch: int = Field(1, ge=1, description="messages per delivery")
    linger_ms: float = Field(0, ge=0, description="how long a batch may wait to fill (ms)")
    timeout: float = Field(5.0, ge=0.001, description="seconds per delivery attempt")
    retry_min: float = Field(0.1, ge=0.001, description="the backoff's first cap (s)")
    retry_max: float = Field(10.0, ge=0.001, description="the backoff's cap (s), at least retry_min")
    spool_dir: str | None = Field(None, description="the node's spool directory (none: $XDG_STATE_HOME/megflow-mp/"
                                  "spool/<config>-<hash>/<node>, or <--state-dir>/spool/<node>)")
    spool_max_bytes: int = Field(64 << 20, ge=1024, description="bytes the spool holds; past it the oldest "
                                 "messages are dropped")
    spool_fsync: bool = Field(False, description="fsync each spooled message (survives a power loss, not only a kill)")
    drain_timeout: float = Field(5.0, ge=0, description="seconds to deliver what is left when the input ends")


class WebhookSinkArgs(SinkArgs):
    url: str = Field(description=f"http:// or https:// URL to POST to ({SECRET})")
    headers: dict[str, str] = Field({}, description=f"extra headers, each value {SECRET}")
    secret: str | None = Field(None, description=f"HMAC-SHA256 key signing each body ({SECRET})")
    signature_header: str = Field("X-Megflow-Signature", description="the header of the signature")


class MqttSinkArgs(SinkArgs):
    batch: int = Field(100, ge=1, description="messages in flight at once")
    host: str = Field("127.0.0.1", description="the broker's host")
    port: int = Field(1883, ge=1, le=65535, description="the broker's port")
    topic: str = Field("megflow/{node}/{stream}", description="topic template of {node} and {stream} (no + or #)")
    username: str | None = Field(None, description=f"user name ({SECRET})")
    password: str | None = Field(None, description=f"password, with username ({SECRET})")
    client_id: str | None = Field(None, description="MQTT client id (none: megflow-<node>-<pid>)")
    keepalive: int = Field(30, ge=5, description="seconds between keep-alive pings")


class RedisStreamSinkArgs(SinkArgs):
    batch: int = Field(100, ge=1, description="messages per XADD pipeline")
    url: str = Field("redis://127.0.0.1:6379/0", description="redis://host[:port]/db, rediss://... (TLS) or "
                     "unix:///path; may be 'env:NAME'")
    password: str | None = Field(None, description=f"password ({SECRET})")
    key: str = Field("megflow:{node}", description="stream key template of {node} and {stream}")
    maxlen: int = Field(100_000, ge=1, description="about how many entries redis keeps")


class JsonlSinkArgs(SinkArgs):
    batch: int = Field(100, ge=1, description="lines per write")
    path: str = Field(description="the file to append to (its directory is created)")
    max_bytes: int = Field(64 << 20, ge=0, description="rotate when a write would take the file past it (0: never)")
    backups: int = Field(5, ge=0, description="rotated files kept (<path>.1 ... <path>.<backups>)")
    fsync: Literal["always", "never"] = Field("always", description="fsync each write")
