"""RedisList: strings pushed (RPUSH) to one redis list, spooled to disk and retried while redis is unreachable.

Contract
--------
* :meth:`RedisList.push` writes the value to a spool on disk (:class:`megflow_mp.spool.Spool`,
  fsync'd) and, while redis is reachable, pushes everything spooled, in order, before it returns. It
  never raises for a redis failure.
* Each value is pushed exactly once, even when the process is killed between the push and the
  removal from the spool: a value goes to redis in one script that adds its spool id to the set
  ``<key>.delivered`` and pushes only when the id was new (the set expires a week after the last
  push).
* A failed push starts an outage: one ERROR line names the server, the list and the reason; the
  values stay spooled (at most ``backlog``; beyond it the oldest are dropped and counted) and a
  background thread retries every ``retry_interval`` seconds. Pushes during an outage only spool
  (they never wait for a connection). The first successful retry ends the outage with one INFO line
  (values pushed late, values dropped); values keep their order.
* Values spooled by an earlier run (the app killed while redis was down) are pushed at the next start.
  The spool is ``spool_dir/<host>_<port>_<db>_<key>`` (``spool_dir``: see
  :func:`megflow_mp.spool.spool_dir`).
* A connection attempt waits at most ``connect_timeout`` seconds, a command ``timeout`` seconds;
  redis-py's own retries are off (this class retries).
* :meth:`close` stops the thread, tries once more and logs an ERROR with the count of values that
  never reached redis. It is idempotent.
"""

from __future__ import annotations

import logging
import re
import threading

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from megflow_mp.spool import Spool, spool_dir

log = logging.getLogger("electric_bicycle")

# KEYS[1] the list, KEYS[2] the delivered ids; ARGV[1] the id, ARGV[2] the value: push once per id
PUSH_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then redis.call('RPUSH', KEYS[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[2], 604800)
"""


def spool_name(*parts) -> str:
    """A file name made of ``parts`` (anything outside [A-Za-z0-9._-] becomes '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", "_".join(str(p) for p in parts))


class RedisList:
    """One redis list ``key`` on ``host:port`` database ``db``."""

    def __init__(self, key: str, host: str = "127.0.0.1", port: int = 6379, db: int = 0, backlog: int = 1000,
                 retry_interval: float = 1.0, connect_timeout: float = 1.0, timeout: float = 5.0,
                 spool: str | None = None):
        if not key:
            raise ValueError("the redis list needs a non-empty key")
        if not 0 < port < 65536 or db < 0 or backlog < 1 or retry_interval <= 0:
            raise ValueError(f"expected 0 < port < 65536, db >= 0, backlog >= 1, retry_interval > 0; got port {port}, "
                             f"db {db}, backlog {backlog}, retry_interval {retry_interval}")
        self.key, self.where = key, f"redis {host}:{port} db {db}"
        self.backlog, self.retry_interval = backlog, retry_interval
        self.client = redis.Redis(host=host, port=port, db=db, socket_connect_timeout=connect_timeout,
                                  socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
        self.spool = Spool(spool_dir(spool) / spool_name(host, port, db, key), limit=backlog)
        self.pushed = 0
        self.down = False
        self._lock = threading.Lock()  # counters and the outage flag
        self._io = threading.Lock()    # one RPUSH at a time
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._push_once = self.client.register_script(PUSH_ONCE)

    @property
    def pending(self) -> list[str]:
        """The values spooled and not yet pushed, oldest first."""
        return self.spool.values()

    @property
    def dropped(self) -> int:
        return self.spool.dropped

    def check(self) -> bool:
        """PING the server and push what an earlier run left spooled: True when it answers; otherwise
        the outage starts (logged, retried)."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            self._outage(exc)
            return False
        log.info("alerts go to list %r on %s", self.key, self.where)
        held = len(self.spool)
        if held:
            log.info("%d alert(s) spooled in %s by an earlier run go to list %r now", held, self.spool.dir, self.key)
            return self.flush()
        return True

    def push(self, value: str) -> None:
        """Spool ``value``; push the spool now unless redis is down (see the module docstring)."""
        self.spool.append(value)
        with self._lock:
            down = self.down
        if not down:
            self.flush()

    def flush(self) -> bool:
        """Push every spooled value, oldest first; True when none is left spooled."""
        with self._io:
            sent = 0

            def send(entry_id: str, value: str) -> None:
                nonlocal sent
                self._push_once(keys=[self.key, f"{self.key}.delivered"], args=[entry_id, value])
                sent += 1

            try:
                if not self.spool.deliver(send) and self.down:
                    self.client.ping()  # nothing held: find out whether the outage is over
            except redis.RedisError as exc:
                with self._lock:
                    self.pushed += sent
                self._outage(exc)
                return False
            with self._lock:
                self.pushed += sent
                if self.down:
                    self.down = False
                    log.info("%s is reachable again: pushed %d held alert(s) to list %r (%d dropped while it was "
                             "down)", self.where, sent, self.key, self.dropped)
            return True

    def close(self) -> None:
        """Stop retrying; a last push of what is queued; log what could not be pushed."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=self.retry_interval + 10)
        if not self.flush():
            log.error("%s: %d alert(s) were never pushed to list %r (redis unreachable at the end)",
                      self.where, len(self.pending), self.key)
        self.client.close()

    # -- outages -----------------------------------------------------------------------------------------
    def _outage(self, exc: Exception) -> None:
        with self._lock:
            started, self.down = not self.down, True
        if started:
            log.error("%s is unreachable (%s: %s): alerts still go to the stream messages and are held (at most "
                      "%d) for list %r; retrying every %g s", self.where, type(exc).__name__, exc, self.backlog,
                      self.key, self.retry_interval)
        if self._thread is None and not self._closed.is_set():
            self._thread = threading.Thread(target=self._retry, name=f"redis-retry:{self.key}", daemon=True)
            self._thread.start()

    def _retry(self) -> None:
        while not self._closed.wait(self.retry_interval):
            if self.down:
                self.flush()
