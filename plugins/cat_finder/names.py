"""Naming the cats of a stream while they are in view (for the live view; notifications stay as they are).

``Identify`` (one per stream) takes Track's messages and sends the crop of each track's current box
on at its first sighting and then every ``every`` sampled frames it is seen (a name can come later,
when the cat shows a better side): ``{'crop', 'track'}`` -> a Reid node -> ``Lookup``.

``Lookup`` compares the embedded crop with the registered cats (reloaded from redis at most every
``refresh`` seconds) and sends ``{'track', 'name', 'similarity'}``: ``name`` is the most similar
cat when its cosine similarity is at least ``threshold``, else None. Unlike RedisProxy's search it
notifies nobody. Redis unreachable: the cats loaded before are used and the error is logged once.

Args: Identify: ``every`` (5). Lookup: ``host``, ``port``, ``db``, ``prefix`` as RedisProxy,
``threshold`` (0.7), ``refresh`` (2 s).
"""

import logging
import time

import numpy as np

from megflow import register

from megflow_mp.models import cosine

from .crops import crop
from .features import FeatureStore, StoreError

log = logging.getLogger(__name__)


@register(inputs=["inp"], outputs=["out"])
class Identify:
    def __init__(self, name, args):
        self.every = max(1, int(args.get("every", 5)))
        self.asked: dict[int, int] = {}  # track id -> sampled frames since its last lookup

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        for ended in msg["ended"]:
            self.asked.pop(ended["id"], None)
        for seen in msg["seen"]:
            tid = seen["id"]
            since = self.asked.get(tid)
            if since is not None and since + 1 < self.every:
                self.asked[tid] = since + 1
                continue
            pixels = crop(msg["data"], seen["box"])
            if pixels is not None:
                self.asked[tid] = 0
                self.out.send(envelope.repack({"crop": pixels, "track": tid}))


@register(inputs=["inp"], outputs=["out"])
class Lookup:
    def __init__(self, name, args):
        self.name = name
        self.store = FeatureStore(host=args.get("host", args.get("ip", "127.0.0.1")), port=int(args.get("port", 6379)),
                                  db=int(args.get("db", 0)), prefix=str(args.get("prefix", "feature.")))
        self.threshold = float(args.get("threshold", 0.7))
        self.refresh = float(args.get("refresh", 2.0))
        self.names: list[str] = []
        self.features = np.zeros((0, 0), np.float32)
        self.loaded_at: float | None = None
        self.failing = False

    def reload(self) -> None:
        now = time.monotonic()
        if self.loaded_at is not None and now - self.loaded_at < self.refresh:
            return
        self.loaded_at = now
        try:
            found = self.store.load()
        except StoreError as exc:
            if not self.failing:
                log.error("Lookup %r: %s; naming with the %d cats loaded before", self.name, exc, len(self.names))
            self.failing = True
            return
        self.failing = False
        self.names = sorted(found)
        self.features = np.stack([found[n] for n in self.names]) if found else np.zeros((0, 0), np.float32)

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        self.reload()
        name, sim = None, 0.0
        feature = msg.get("feature")
        if feature is not None and self.names and self.features.shape[1] == feature.size:
            sims = cosine(feature[None], self.features)[0]
            best = int(np.argmax(sims))
            sim = round(float(sims[best]), 4)
            if sim >= self.threshold:
                name = self.names[best]
        self.out.send(envelope.repack({"track": msg["track"], "name": name, "similarity": sim}))
