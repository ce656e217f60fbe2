"""Token checks of one server process: a cache so that only unknown tokens pay the KDF.

:class:`Verifier` keeps the tokens file (:mod:`.tokens`) as last read and re-reads it when its
mtime, size or inode change (checked with one ``stat`` per call), so ``megflow-mp token revoke``
takes effect at the next request, without a restart; a re-read empties the cache. Verified tokens
are cached by ``HMAC(process key, token)`` (the token itself is never kept): a cached token costs
one HMAC and a dict lookup, an unknown one a KDF run (:meth:`TokenEntry.matches`) when its id names
an entry, nothing when it names none. A file that became unreadable or malformed refuses every
token until it is fixed (fail closed; logged once).

Thread-safe: the event loop asks :meth:`cached` (never blocks) and runs :meth:`verify` (may run
the KDF) on a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from typing import NamedTuple

from ..errors import AuthError
from .tokens import TokenFile, read_tokens

log = logging.getLogger("megflow_mp")
CACHE_MAX = 4096


class Identity(NamedTuple):
    """Who a request is: the token's name, its role and its id (never the token)."""

    name: str
    role: str
    id: str


class Verifier:
    def __init__(self, path):
        self.path = path
        self.key = secrets.token_bytes(32)  # keys the cache: digests mean nothing outside this process
        self.lock = threading.Lock()
        self.stamp = None
        self.tokens: TokenFile | None = None
        self.ids: dict = {}
        self.cache: dict[bytes, Identity] = {}
        self.session_key = secrets.token_bytes(32)  # when the file has none: this process's own
        self.fresh()

    def fresh(self) -> None:
        """Re-read the file if it changed since the last read (one ``stat``)."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp == self.stamp and self.tokens is not None:
            return
        with self.lock:
            if stamp == self.stamp and self.tokens is not None:
                return
            try:
                tokens = read_tokens(self.path)
            except AuthError as exc:
                if self.tokens is not None or self.stamp is None:
                    log.error("auth: every request is refused until the tokens file is fixed: %s", exc)
                self.tokens, self.ids, self.cache, self.stamp = TokenFile(self.path, {}, None), {}, {}, stamp
                return
            self.tokens, self.ids, self.cache, self.stamp = tokens, tokens.by_id(), {}, stamp
            if tokens.session_key:
                self.session_key = tokens.session_key

    def _digest(self, token: str) -> bytes:
        return hmac.new(self.key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def cached(self, token: str) -> Identity | None:
        """The identity of a token verified before (since the file last changed), else None."""
        self.fresh()
        return self.cache.get(self._digest(token))

    def verify(self, token: str) -> Identity | None:
        """The identity of ``token``, or None: runs the KDF when the token's id names an entry."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        entry = self.ids.get(token.split(".", 1)[0])
        if entry is None or not entry.matches(token):
            return None
        identity = Identity(entry.name, entry.role, entry.id)
        with self.lock:
            if self.tokens is not None and self.tokens.entries.get(entry.name) == entry:  # not revoked meanwhile
                if len(self.cache) >= CACHE_MAX:
                    self.cache.clear()
                self.cache[self._digest(token)] = identity
        return identity

    def current(self, name: str, kid: str) -> Identity | None:
        """The identity of entry ``name`` if it still has id ``kid`` (a session's token not revoked)."""
        self.fresh()
        entry = self.tokens.entries.get(name) if self.tokens else None
        if entry is None or not hmac.compare_digest(entry.id, kid):
            return None
        return Identity(entry.name, entry.role, entry.id)
