"""The arguments of VideoServer and VideoInput: the reader options, declared streams, the server's own.

Declared once here (:mod:`megflow_mp.nodeargs`); the nodes read them validated, ``check`` refuses
what they do not take, and the reference and the config's JSON Schema show them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from ..nodeargs import NodeArgs, StrList
from ..video.hosts import HostPolicy
from ..video.source import ReaderOptions
from ..video.spec import StreamOptions, StreamSpec, name_problem
from .http_node import ListenArgs


class ReaderArgs(NodeArgs):
    """How a video source is read (VideoServer's and VideoInput's; :class:`~..video.source.ReaderOptions`)."""

    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport")
    open_timeout: float = Field(5.0, gt=0, le=3600, description="seconds to open the source")
    read_timeout: float = Field(5.0, gt=0, le=3600,
                                description="a live source that sends nothing for this long is reconnected")
    backoff_initial: float = Field(0.5, gt=0, le=3600, description="first wait (s) before a reconnect or restart, "
                                   "doubled each time")
    backoff_max: float = Field(10.0, gt=0, le=3600, description="longest wait (s) before a reconnect or restart")
    max_reconnects: int | None = Field(None, ge=0, description="failed reconnects before the reader gives up "
                                       "(none: never)")
    policy: Literal["block", "drop_oldest"] | None = Field(
        None, description="what a full frame queue does (none: block for files, drop_oldest for live sources)")
    queue_size: int = Field(8, ge=1, le=1024, description="decoded frames buffered per stream")
    threads: int = Field(0, ge=0, le=64, description="codec threads (0: auto)")
    realtime: bool = Field(False, description="files: pace frames at their timestamps")


READER_ARGS = tuple(ReaderArgs.model_fields)


def reader_options(args) -> ReaderOptions:
    """The reader options of a node's ``args`` (a dict, or validated :class:`ReaderArgs`)."""
    given = args if isinstance(args, ReaderArgs) else ReaderArgs.of(args)
    return ReaderOptions(**given.model_dump(include=set(READER_ARGS)))


class StreamEntry(StreamOptions):
    """A declared stream of ``streams = [...]``: its id, its URL, and its own options."""

    model_config = ConfigDict(strict=True, extra="forbid")
    id: str = Field(description="the stream's name")
    url: str = Field(description="rtsp, rtsps, http(s) URL, or a file under allow_dirs")

    @field_validator("id")
    @classmethod
    def _name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def spec(self) -> StreamSpec:
        options = StreamOptions(**self.model_dump(exclude={"id", "url"}, exclude_none=True))
        return StreamSpec(id=self.id, url=self.url, options=options)


class VideoServerArgs(ReaderArgs, ListenArgs):  # its fields in order: the listening ones, the reader's, its own
    allow_dirs: StrList = Field([], description="directories whose files /start may open (none: live URLs only)")
    allow_hosts: StrList = Field([], description="hosts live URLs may name: names, *.domain, addresses, networks "
                                 "(none: any host but link-local and metadata ones)")
    streams: list[StreamEntry] = Field([], description="declared streams, started with the app: "
                                       "{ id, url, <reader options>, on_error }")
    state_dir: str | None = Field(None, description="where streams started over HTTP are recorded (none: "
                                  "--state-dir, else $XDG_STATE_HOME/megflow-mp/<config>-<hash>)")
    max_msgs: int = Field(1000, ge=1, description="messages /get_msgs keeps per stream (the oldest dropped)")
    events_buffer: int = Field(10000, ge=1, description="messages kept per stream for resuming /streams/{id}/events")
    events_buffer_all: int = Field(100000, ge=1, description="messages kept for resuming /events")
    history: int = Field(1000, ge=0, description="ended streams /list keeps")
    on_error: Literal["restart", "end"] | None = Field(
        None, description="a node of a stream's subgraph raising: start the stream again (restart) or end it "
        "(end); none: restart for live sources, end for files")
    max_restarts: int = Field(5, ge=0, description="restarts of a stream within restart_window before it is "
                              "given up")
    restart_window: float = Field(60, gt=0, description="seconds over which max_restarts counts")

    @field_validator("allow_hosts")
    @classmethod
    def _hosts(cls, value: list) -> list:
        try:
            HostPolicy(value)
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("allow_hosts: ")) from None
        return value

    @field_validator("streams")
    @classmethod
    def _unique(cls, value: list) -> list:
        seen: dict = {}
        for i, entry in enumerate(value):
            if entry.id in seen:
                raise ValueError(f"streams[{i}]: stream id {entry.id!r} is declared twice (first in "
                                 f"streams[{seen[entry.id]}])")
            seen[entry.id] = i
        return value


class VideoInputArgs(ReaderArgs):
    urls: StrList = Field([], description="video files or rtsp/rtsps/http(s) URLs, one stream each")
    repeat: int = Field(1, ge=1, description="times each url is read (all at once, one stream each)")
    print_msgs: bool = Field(False, description="log the strings the subgraphs send out (INFO)")
