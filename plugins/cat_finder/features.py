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
* Registrations and notifications that redis could not take (:meth:`FeatureStore.hold`) are spooled
  to disk (:class:`megflow_mp.spool.Spool`, fsync'd, at most ``backlog``) and written in order by a
  retry thread once redis answers, also by the next run of the app when it was killed meanwhile.
  Each is applied once: one script adds the entry's id to ``<notify_key>.delivered`` and writes only
  when the id is new. The spool is ``spool_dir/<kind>_<host>_<port>_<db>_<key>``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading

import numpy as np

from megflow_mp.spool import Spool, spool_dir

__all__ = ["FeatureStore", "StoreError", "encode", "decode"]

log = logging.getLogger(__name__)

# KEYS[1] the key written, KEYS[2] the delivered ids; ARGV: id, "set" or "rpush", value
APPLY_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  if ARGV[2] == 'set' then redis.call('SET', KEYS[1], ARGV[3]) else redis.call('RPUSH', KEYS[1], ARGV[3]) end
end
redis.call('EXPIRE', KEYS[2], 604800)
"""


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
                 notify_key: str = "notification.cat_finder", timeout: float = 1.0, spool: str | None = None,
                 kind: str = "cat_finder", backlog: int = 1000, retry_interval: float = 1.0):
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
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{kind}_{self.host}_{self.port}_{self.db}_{self.notify_key}")
        self.spool = Spool(spool_dir(spool) / name, limit=backlog)
        self.retry_interval = float(retry_interval)
        self._apply_once = self.client.register_script(APPLY_ONCE)
        self._io = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        if len(self.spool):  # left by an earlier run: written as soon as redis answers
            self._start_retry()

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
        """Store (or replace) the feature of ``name``; returns the key. Spooled first: a StoreError
        means it waits in the spool for redis (see the module docstring)."""
        key = self.key(name)
        self.hold("set", key, encode(feature))
        self._write_held(f"store {key!r}")
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
        """Append one notification to ``notify_key``. Spooled first: a StoreError means it waits in
        the spool for redis."""
        self.hold("rpush", self.notify_key, text)
        self._write_held(f"push to {self.notify_key!r}")

    def _write_held(self, what: str) -> None:
        try:
            self._call(what, self.flush)
        except StoreError:
            self._start_retry()
            raise

    # -- the spool ---------------------------------------------------------------------------------------
    def hold(self, op: str, key: str, value: str) -> None:
        """Spool ``op`` (``"set"`` or ``"rpush"``) of ``value`` to ``key``; :meth:`flush` writes it."""
        self.spool.append(json.dumps({"op": op, "key": key, "value": value}))

    def flush(self) -> int:
        """Apply every spooled write, oldest first; returns how many; redis errors propagate."""
        def send(entry_id: str, text: str) -> None:
            entry = json.loads(text)
            self._apply_once(keys=[entry["key"], f"{self.notify_key}.delivered"],
                             args=[entry_id, entry["op"], entry["value"]])

        with self._io:
            return self.spool.deliver(send)

    def close(self) -> None:
        """Stop the retry thread (what is still spooled waits for the next run)."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(self.retry_interval + 10)

    def _start_retry(self) -> None:
        with self._io:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._retry, name="redis-spool", daemon=True)
                self._thread.start()

    def _retry(self) -> None:
        while not self._closed.wait(self.retry_interval):
            try:
                sent = self.flush()
            except self._redis.RedisError:
                continue
            if sent:
                log.info("%s: wrote %d spooled registration(s)/notification(s) (%d dropped while it was down)",
                         self.where, sent, self.spool.dropped)
            with self._io:  # a hold() after this starts a new thread
                if not len(self.spool):
                    self._thread = None
                    return

    @staticmethod
    def _escape(text: str) -> str:
        """``text`` with redis glob characters escaped, for a MATCH pattern."""
        return "".join("\\" + c if c in "*?[]\\" else c for c in text)
