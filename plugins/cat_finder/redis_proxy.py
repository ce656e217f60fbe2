"""RedisProxy: registers cats (``mode = "save"``) or looks for them (``mode = "search"``) in redis.

save -- in: BestBox/Reid's message (``extra_data`` = the cat's name, ``feature``, ``box``, ``score``,
or ``error``). The feature is stored under ``<prefix><name>`` (replacing an earlier one) and the reply
is the JSON string ``{"name", "key", "box", "score"}``; a message with an error gives ``{"name",
"error"}`` instead (nothing stored). While redis is unreachable the registration is spooled to disk
and stored when redis answers again (also by the next run, if the app is killed meanwhile): the reply
then says so in ``"held"`` (the reason redis did not take it).

search -- in: the embedded best view of an ended track (Shaper + Reid). The registered features are
(re)loaded from redis at most every ``refresh`` seconds (0: at every search, so a cat registered
while streams run is found at once); when redis is unreachable the last loaded ones are used and the
error is logged. The most similar cat (cosine) is a match when the similarity is at least
``threshold``: then the notification ``{"stream", "name", "similarity", "track", "first_frame",
"last_frame", "best_frame", "box", "message"}`` (a JSON string) goes out -- to the stream's messages
-- and is appended to the redis list ``notify_key`` (spooled the same way while redis is unreachable,
each notification written once). No match: nothing goes out (logged at INFO).

Args: ``mode``; ``host`` (or the seeds' ``ip``, "127.0.0.1"), ``port`` (6379), ``db`` (0), ``prefix``
("feature."), ``notify_key`` ("notification.cat_finder"), ``timeout`` (1 s per redis call),
``threshold`` (0.7), ``refresh`` (0 s), ``spool_dir`` (where writes wait while redis is down; default
``$XDG_STATE_HOME/megflow-mp/spool``, else ``.megflow-mp/spool`` in the working directory), ``backlog``
(at most this many spooled, 1000), ``retry_interval`` (1 s).
"""

import json
import logging
import time

import numpy as np

from megflow import register

from megflow_mp.models import cosine

from .crops import box_list
from .features import FeatureStore, StoreError

log = logging.getLogger(__name__)
MODES = ("save", "search")


@register(inputs=["inp"], outputs=["out"])
class RedisProxy:
    def __init__(self, name, args):
        self.name = name
        self.mode = str(args.get("mode", ""))
        if self.mode not in MODES:
            raise ValueError(f"RedisProxy {name!r}: mode must be one of {MODES}, got {self.mode!r}")
        self.store = FeatureStore(host=args.get("host", args.get("ip", "127.0.0.1")), port=int(args.get("port", 6379)),
                                  db=int(args.get("db", 0)), prefix=str(args.get("prefix", "feature.")),
                                  notify_key=str(args.get("notify_key", "notification.cat_finder")),
                                  timeout=float(args.get("timeout", 1.0)), spool=args.get("spool_dir") or None,
                                  kind=self.mode, backlog=int(args.get("backlog", 1000)),
                                  retry_interval=float(args.get("retry_interval", 1.0)))
        why = self.store.unreachable()
        if why:  # the app still starts: registrations answer with an error, searches use what was loaded
            log.warning("RedisProxy %r: %s. Start redis-server there or set the app's redis_host/redis_port "
                        "(the app goes on and uses redis as soon as it answers)", name, why.rstrip("."))
        self.threshold = float(args.get("threshold", 0.7))
        self.refresh = float(args.get("refresh", 0.0))
        self.names: list[str] = []
        self.features = np.zeros((0, 0), np.float32)
        self.loaded_at: float | None = None

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        if self.mode == "save":
            self.out.send(envelope.repack(json.dumps(self.save(envelope.msg))))
        else:
            note = self.search(envelope.msg, envelope.from_addr)
            if note is not None:
                self.out.send(envelope.repack(json.dumps(note)))

    # -- save --------------------------------------------------------------------------------------------
    def save(self, msg: dict) -> dict:
        """Store one cat's feature; the reply as a dict."""
        name = str(msg.get("extra_data") or "").strip()
        if msg.get("error") or msg.get("feature") is None:
            return {"name": name, "error": msg.get("error") or "no feature was computed"}
        reply = {"name": name, "key": self.store.key(name), "box": box_list(msg["box"]),
                 "score": round(float(msg["score"]), 4)}
        try:
            self.store.save(name, msg["feature"])
        except StoreError as exc:
            log.error("RedisProxy %r: %s (the cat %r is spooled and stored when redis answers)", self.name, exc, name)
            return {**reply, "held": str(exc)}
        log.info("RedisProxy %r: registered %r as %s", self.name, name, reply["key"])
        return reply

    # -- search ------------------------------------------------------------------------------------------
    def reload(self) -> None:
        """The registered features from redis, unless loaded less than ``refresh`` seconds ago."""
        now = time.monotonic()
        if self.loaded_at is not None and now - self.loaded_at < self.refresh:
            return
        try:
            found = self.store.load()
        except StoreError as exc:
            log.error("RedisProxy %r: %s; searching the %d cats loaded before", self.name, exc, len(self.names))
            return
        self.loaded_at = now
        self.names = sorted(found)
        self.features = np.stack([found[n] for n in self.names]) if found else np.zeros((0, 0), np.float32)

    def search(self, msg: dict, stream) -> dict | None:
        """The notification for one ended track, or None when no registered cat is similar enough."""
        self.reload()
        where = f"stream {stream} track {msg['track']} (frames {msg['first_frame']}-{msg['last_frame']})"
        feature = msg["feature"]
        if not self.names:
            log.info("RedisProxy %r: %s: no cat is registered", self.name, where)
            return None
        if self.features.shape[1] != feature.size:
            log.error("RedisProxy %r: %s: registered features have %d values, this one %d (another model?)",
                      self.name, where, self.features.shape[1], feature.size)
            return None
        sims = cosine(feature[None], self.features)[0]
        best = int(np.argmax(sims))
        name, sim = self.names[best], round(float(sims[best]), 4)
        if sim < self.threshold:
            log.info("RedisProxy %r: %s: no registered cat (closest %r, similarity %.3f < %.3f)", self.name, where,
                     name, sim, self.threshold)
            return None
        note = {"stream": stream, "name": name, "similarity": sim, "track": msg["track"],
                "first_frame": msg["first_frame"], "last_frame": msg["last_frame"], "best_frame": msg["best_frame"],
                "box": msg["box"], "message": f"{name} left the fence"}
        log.info("RedisProxy %r: %s: %s (similarity %.3f)", self.name, where, note["message"], sim)
        try:
            self.store.notify(json.dumps(note))
        except StoreError as exc:
            log.error("RedisProxy %r: %s; the notification is spooled and written when redis answers", self.name, exc)
        return note
