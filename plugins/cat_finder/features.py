"""The registered cats in redis: one feature per cat under ``<prefix><name>``, notifications in a list.

Contracts
---------
* A feature is a 1-D float32 vector (the L2-normalised embedding of the cat's best crop), stored as
  the base64 text of its raw little-endian bytes (readable with ``redis-cli``, as MegFlow stored it).
  Saving a name again replaces its feature.
* :meth:`FeatureStore.load` reads every ``<prefix>*`` key (SCAN, then MGET) and returns
  ``{name: vector}``; a value that is not base64 float32, or whose size differs from the others, is
  skipped with an error in the log, so one bad key never hides the other cats.
* Notifications are JSON strings appended with RPUSH to ``notify_key`` (oldest first: consume with
  LPOP/BLPOP).
* Every redis failure (unreachable server, timeout, refused command) raises :class:`StoreError`, whose
  text names the server (``host:port/db``) and the redis error; a call fails within about twice
  ``timeout`` (one retry). The client reconnects by itself at the next call, so a server that comes
  back is used again without a restart.
"""

from __future__ import annotations

import base64
import binascii
import logging

import numpy as np

__all__ = ["FeatureStore", "StoreError", "encode", "decode"]

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """redis could not be reached or refused a command; ``str()`` names the server and the reason."""


def encode(feature: np.ndarray) -> str:
    """Base64 text of a float32 vector."""
    vec = np.asarray(feature, dtype="<f4").reshape(-1)
    return base64.b64encode(vec.tobytes()).decode("ascii")


def decode(text) -> np.ndarray:
    """The float32 vector of :func:`encode`'s text; ValueError for anything else."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    if not raw or len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes is no float32 vector")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


class FeatureStore:
    """One redis database holding the registered cats (see the module docstring).

    ``host``, ``port``, ``db``: the server; ``prefix``: the key prefix of features (``"feature."``);
    ``notify_key``: the list notifications go to; ``timeout``: seconds to connect or to wait for an
    answer before a call fails."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, db: int = 0, prefix: str = "feature.",
                 notify_key: str = "notification.cat_finder", timeout: float = 1.0):
        import redis
        from redis.backoff import ConstantBackoff
        from redis.retry import Retry

        if not prefix:
            raise ValueError("prefix must not be empty: it keeps the features apart from other keys")
        self.host, self.port, self.db = str(host), int(port), int(db)
        self.prefix, self.notify_key = str(prefix), str(notify_key)
        self._redis = redis
        # one quick retry (a pooled connection to a restarted server fails once), not the client's default
        # backoff of seconds: the pipeline waits on every call
        self.client = redis.Redis(host=self.host, port=self.port, db=self.db, decode_responses=True,
                                  socket_connect_timeout=float(timeout), socket_timeout=float(timeout),
                                  retry=Retry(ConstantBackoff(0.05), 1))

    @property
    def where(self) -> str:
        return f"redis {self.host}:{self.port}/{self.db}"

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except self._redis.RedisError as exc:
            raise StoreError(f"{self.where}: cannot {what}: {type(exc).__name__}: {exc}") from None

    def unreachable(self) -> str | None:
        """PING the server: None when it answers, else why not (one line)."""
        try:
            self._call("reach the server", self.client.ping)
        except StoreError as exc:
            return str(exc)
        return None

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def save(self, name: str, feature: np.ndarray) -> str:
        """Store (or replace) the feature of ``name``; returns the key."""
        key = self.key(name)
        self._call(f"store {key!r}", self.client.set, key, encode(feature))
        return key

    def load(self) -> dict[str, np.ndarray]:
        """Every registered cat: ``{name: feature}``."""
        keys = sorted(self._call(f"list the keys {self.prefix}*", lambda: list(
            self.client.scan_iter(match=f"{self._escape(self.prefix)}*", count=1000))))
        if not keys:
            return {}
        values = self._call(f"read {len(keys)} features", self.client.mget, keys)
        out: dict[str, np.ndarray] = {}
        for key, value in zip(keys, values):
            if value is None:  # deleted between SCAN and MGET
                continue
            try:
                vec = decode(value)
            except ValueError as exc:
                log.error("%s: key %r is not a cat feature (%s); skipped", self.where, key, exc)
                continue
            out[key[len(self.prefix):]] = vec
        sizes = {v.size for v in out.values()}
        if len(sizes) > 1:
            common = max(sizes, key=lambda s: sum(v.size == s for v in out.values()))
            for name in [n for n, v in out.items() if v.size != common]:
                log.error("%s: feature of %r has %d values, the others %d; skipped", self.where, name,
                          out.pop(name).size, common)
        return out

    def notify(self, text: str) -> None:
        """Append one notification to ``notify_key``."""
        self._call(f"push to {self.notify_key!r}", self.client.rpush, self.notify_key, text)

    @staticmethod
    def _escape(text: str) -> str:
        """``text`` with redis glob characters escaped, for a MATCH pattern."""
        return "".join("\\" + c if c in "*?[]\\" else c for c in text)
