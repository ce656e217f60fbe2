"""What names a video source and how it is read, without loading PyAV.

:class:`ReaderOptions` (the reader's settings, as VideoServer and VideoInput take them from node
args) and :func:`is_live` (whether a URL is a live source: reconnects, drops the oldest frames)
are what the nodes need at build time; the decoding itself is in :mod:`.reader`, which imports
PyAV, loaded only by the processes that decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"})


@dataclass(frozen=True)
class ReaderOptions:
    transport: str = "tcp"  # rtsp transport ("tcp" or "udp")
    open_timeout: float = 5.0  # seconds: av.open(timeout=(open, read)) and the "timeout" option (µs)
    read_timeout: float = 5.0
    reconnect: bool | None = None  # None: True for live URLs, False for files
    backoff_initial: float = 0.5  # seconds, doubled per failed attempt, capped at backoff_max
    backoff_max: float = 10.0
    max_reconnects: int | None = None  # None: forever
    policy: str | None = None  # "block" (files' default) or "drop_oldest" (live default)
    queue_size: int = 8  # decoded frames buffered between the decode thread and the consumer
    threads: int = 0  # codec threads (0 = auto); thread_type "AUTO"
    realtime: bool = False  # files: pace frames at their pts; live sources are paced by the source


def is_live(url: str) -> bool:
    return urlsplit(url).scheme.lower() in LIVE_SCHEMES
