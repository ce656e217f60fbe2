"""What names and configures one VideoServer stream: its id, its URL and its own options.

Ids: MegFlow's integers (0, 1, 2, ... given by ``POST /start``), or names a user gives (``POST
/start/{url}?id=gate``, ``POST /streams``, ``streams = [...]`` in the config): 1 to 64 letters, digits,
``_``, ``.`` or ``-``, not digits only (those are MegFlow's ids). In a route, ``parse_sid`` turns the
path segment back into the id: digits are an integer id, anything else a name.

:class:`StreamOptions` are the per-stream settings (the reader's, and ``on_error``); a field left
out takes the node's value. :class:`StreamSpec` is a stream as a user declares it.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from .source import ReaderOptions

StreamId = Union[int, str]
NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
ON_ERROR = ("restart", "end")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a stream, or None when it can."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return (f"a stream id is 1 to 64 letters, digits, '_', '.' or '-', got {name!r}"
                if isinstance(name, str) else f"a stream id is a string, got {name!r}")
    if name.isdigit():
        return f"a stream id of digits only ({name!r}) is MegFlow's numbering: give a name with a letter in it"
    return None


def parse_sid(text: str) -> StreamId:
    """The id a route's path segment names: digits are MegFlow's integer ids, the rest names."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else text  # not '²': isdigit, no int


def sid_order(sid: StreamId) -> tuple:
    """Sort key for a mix of ids: integers first, by value, then names."""
    return (0, sid, "") if isinstance(sid, int) else (1, 0, sid)


class StreamOptions(BaseModel):
    """One stream's own settings; each one left out takes the VideoServer node's value (None here).
    The fields are typed without ``| None`` so that the OpenAPI 3.0 document has no ``null`` type, which
    3.0 does not know (a client sends a field or leaves it out; an explicit null is refused)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"read_timeout": 10, "on_error": "restart"}})
    transport: Literal["tcp", "udp"] = Field(None, description="RTSP transport")
    open_timeout: float = Field(None, ge=0.001, le=3600, description="seconds to open the source")
    read_timeout: float = Field(None, ge=0.001, le=3600,
                                       description="a live source that sends nothing for this long is reconnected")
    backoff_initial: float = Field(None, ge=0.001, le=3600, description="first wait before a reconnect or restart")
    backoff_max: float = Field(None, ge=0.001, le=3600, description="longest wait before a reconnect or restart")
    max_reconnects: int = Field(None, ge=0, description="failed reconnects before the reader gives up")
    policy: Literal["block", "drop_oldest"] = Field(None, description="what a full frame queue does")
    queue_size: int = Field(None, ge=1, le=1024, description="decoded frames buffered")
    threads: int = Field(None, ge=0, le=64, description="codec threads (0: auto)")
    realtime: bool = Field(None, description="files: pace frames at their timestamps")
    on_error: Literal["restart", "end"] = Field(
        None, description="when a node of the stream's subgraph raises: start the stream again (restart, the "
        "default for live sources) or end it (end, the default for files)")

    def reader(self, base: ReaderOptions) -> ReaderOptions:
        """``base`` with this stream's reader settings applied."""
        given = self.model_dump(exclude_none=True, exclude={"on_error"})
        return replace(base, **given) if given else base


class StreamSpec(BaseModel):
    """A stream as ``POST /streams`` takes it (and as a config's ``streams = [...]`` declares it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "url": "rtsp://192.0.2.10:554/stream1", "id": "gate", "options": {"read_timeout": 10}}})
    url: str = Field(description="rtsp, rtsps, http(s) URL, or a file under the server's allow_dirs")
    id: str = Field(None, description="the stream's name (default: the next integer id)")
    options: StreamOptions = Field(default_factory=StreamOptions)


def declared_streams(value, node: str) -> list[StreamSpec]:
    """The ``streams = [{ id = "gate", url = "...", read_timeout = 5, ... }]`` argument of VideoServer
    ``node``; raises ValueError naming the entry and what is wrong with it."""
    if not isinstance(value, list):
        raise ValueError(f"VideoServer {node!r}: streams must be a list of tables, got {type(value).__name__}")
    specs, seen = [], set()
    for i, entry in enumerate(value):
        where = f"VideoServer {node!r}: streams[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a table like {{ id = \"gate\", url = \"rtsp://...\" }}")
        entry = dict(entry)
        sid, url = entry.pop("id", None), entry.pop("url", None)
        if sid is None or url is None:
            raise ValueError(f"{where} needs both an id and a url")
        problem = name_problem(sid)
        if problem:
            raise ValueError(f"{where}.id: {problem}")
        if sid in seen:
            raise ValueError(f"{where}.id: {sid!r} is declared twice")
        seen.add(sid)
        try:
            specs.append(StreamSpec(id=sid, url=str(url), options=StreamOptions(**entry)))
        except Exception as exc:  # pydantic's ValidationError: one line per field
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in getattr(exc, "errors", list)())
            raise ValueError(f"{where} ({sid}): {fields or exc}") from None
    return specs
