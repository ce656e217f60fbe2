"""RedisList: strings pushed (RPUSH) to one redis list, held and retried while redis is unreachable.

Contract
--------
* :meth:`RedisList.push` queues a value and, while redis is reachable, pushes everything queued
  at once (one RPUSH, in order) before it returns. It never raises for a redis failure.
* A failed push starts an outage: one ERROR line names the server, the list and the reason; the
  values stay queued (at most ``backlog``; beyond it the oldest are dropped and counted) and a
  background thread retries every ``retry_interval`` seconds. Pushes during an outage only queue
  (they never wait for a connection). The first successful retry ends the outage with one INFO line
  (values pushed late, values dropped); values keep their order.
* A connection attempt waits at most ``connect_timeout`` seconds, a command ``timeout`` seconds;
  redis-py's own retries are off (this class retries).
* :meth:`close` stops the thread, tries once more and logs an ERROR with the count of values that
  never reached redis. It is idempotent.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("electric_bicycle")


class RedisList:
    """One redis list ``key`` on ``host:port`` database ``db``."""

    def __init__(self, key: str, host: str = "127.0.0.1", port: int = 6379, db: int = 0, backlog: int = 1000,
                 retry_interval: float = 1.0, connect_timeout: float = 1.0, timeout: float = 5.0):
        if not key:
            raise ValueError("the redis list needs a non-empty key")
        if not 0 < port < 65536 or db < 0 or backlog < 1 or retry_interval <= 0:
            raise ValueError(f"expected 0 < port < 65536, db >= 0, backlog >= 1, retry_interval > 0; got port {port}, "
                             f"db {db}, backlog {backlog}, retry_interval {retry_interval}")
        self.key, self.where = key, f"redis {host}:{port} db {db}"
        self.backlog, self.retry_interval = backlog, retry_interval
        self.client = redis.Redis(host=host, port=port, db=db, socket_connect_timeout=connect_timeout,
                                  socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
        self.pending: deque[str] = deque()
        self.pushed = 0
        self.dropped = 0
        self.down = False
        self._lock = threading.Lock()  # pending and counters
        self._io = threading.Lock()    # one RPUSH at a time
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """PING the server: True when it answers; otherwise the outage starts (logged, retried)."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            self._outage(exc)
            return False
        log.info("alerts go to list %r on %s", self.key, self.where)
        return True

    def push(self, value: str) -> None:
        """Queue ``value``; push the queue now unless redis is down (see the module docstring)."""
        with self._lock:
            self.pending.append(value)
            self._trim()
            down = self.down
        if not down:
            self.flush()

    def flush(self) -> bool:
        """Push every queued value in one RPUSH; True when none is left queued."""
        with self._io:
            with self._lock:
                batch = list(self.pending)
                self.pending.clear()
            if not batch and not self.down:
                return True
            try:
                if batch:
                    self.client.rpush(self.key, *batch)
                else:  # nothing held: find out whether the outage is over
                    self.client.ping()
            except redis.RedisError as exc:
                with self._lock:
                    self.pending.extendleft(reversed(batch))
                    self._trim()
                self._outage(exc)
                return False
            with self._lock:
                self.pushed += len(batch)
                if self.down:
                    self.down = False
                    log.info("%s is reachable again: pushed %d held alert(s) to list %r (%d dropped while it was "
                             "down)", self.where, len(batch), self.key, self.dropped)
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
    def _trim(self) -> None:
        while len(self.pending) > self.backlog:
            self.pending.popleft()
            self.dropped += 1

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
