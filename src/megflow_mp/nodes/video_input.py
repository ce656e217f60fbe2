"""VideoInput: video files or rtsp URLs into per-stream subgraph instances, for pipeline-level tests.

Arguments (the table below): ``urls`` (files or rtsp/rtsps/http(s) URLs) and ``repeat``: one
subgraph instance per url and repeat, all running at once, fed as VideoServer feeds them (``{'data': frame}``,
``from_addr`` = stream id, ``partial_id`` = frame index). The node, and so the run, ends when every
stream has ended. On a terminal a progress line shows frames, fps and, for files, the ETA. Strings
the subgraphs send out are logged (INFO) when ``print_msgs = true``. Reader options as VideoServer's.
URLs are logged with their secrets as ``***`` (:mod:`..video.redact`).
"""

import logging
import sys

from ..registry import register
from ..errors import Cancelled
from ..runtime import malloc
from ..video.source import is_live
from ..video.stream import Stream
from .video_args import VideoInputArgs, reader_options

log = logging.getLogger("megflow_mp")


@register(name="VideoInput", inputs=["inp"], outputs=["out"], args=VideoInputArgs)
class VideoInput:
    dynamic_outputs = ("out",)
    dynamic_inputs = ("inp",)
    drain_as_source = True

    def __init__(self, name, args):
        self.name = name
        a = VideoInputArgs.of(args, f"VideoInput {name!r}")
        self.urls, self.repeat, self.print_msgs = list(a.urls), a.repeat, a.print_msgs
        self.options = reader_options(a)

    def bind_runtime(self, worker, node):
        self.worker, self.node, self.hub = worker, node, worker.hub
        malloc.limit_arenas()  # before any thread of a stream: their arenas' free memory stays bounded
        self.dyn = node.spec.dynamic["out"]
        back = node.spec.dynamic.get("inp")
        self.results = back.port if back else None

    def exec(self):
        streams = []
        for sid, url in enumerate(u for _ in range(self.repeat) for u in self.urls):
            stream = Stream(sid, url, self.options, self.worker, self.node, self.dyn, self.results)
            stream.open()  # a file that cannot be decoded fails the node (and the run) here
            stream.attach(self.dyn.path)
            streams.append(stream)
        self.total = sum(_frame_count(s.url) for s in streams)
        self._timer = self.hub.call_later(0.5, self.report, streams) if sys.stderr.isatty() else None
        try:
            for stream in streams:
                stream.done.wait()
                self.log_messages(stream)
        except Cancelled:
            for stream in streams:
                stream.stop()
            for stream in streams:
                stream.done.wait()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                sys.stderr.write("\n")
        failed = [s for s in streams if s.state == "error"]
        for s in failed:
            log.error("VideoInput %r: stream %s (%s) failed: %s", self.name, s.id, s.shown_url, s.reason)

    def log_messages(self, stream):
        for msg in stream.take_messages():
            if self.print_msgs:
                log.info("stream %s: %s", stream.id, msg)

    def report(self, streams):
        infos = [s.info() for s in streams]
        frames = sum(i["frames"] for i in infos)
        fps = sum(i["fps"] for i in infos)
        done = sum(1 for s in streams if s.done.done)
        eta = f"  ETA {(self.total - frames) / fps:.0f} s" if self.total and fps > 0 else ""
        sys.stderr.write(f"\r[{self.name}] streams {done}/{len(streams)}  frames {frames}"
                         f"{'/' + str(self.total) if self.total else ''}  {fps:.1f} fps{eta}   ")
        sys.stderr.flush()
        for s in streams:
            self.log_messages(s)
        if self._timer is not None:
            self._timer = self.hub.call_later(0.5, self.report, streams)


def _frame_count(url: str) -> int:
    """Frames in a file as its container declares them (0 for live sources or when unknown)."""
    if is_live(url):
        return 0
    try:
        import av

        with av.open(url) as container:
            return int(container.streams.video[0].frames or 0)
    except Exception:  # noqa: BLE001 - only the progress line needs it
        return 0
