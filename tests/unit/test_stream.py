"""video.stream.Stream: one decoded clip feeding one subgraph instance, in-process.

The creator's worker is real (tests/support/inproc.py); the host of the instance's node is played
by the test through what the worker sends: it answers ``install``, and when the stream's input is
closed it sends the instance's results and reports its node's end. Frames are real (PyAV decodes
a clip made by tests/support/clips.py into the worker's shared memory)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from megflow_mp import Envelope
from megflow_mp.errors import NodeFailure
from megflow_mp.plan import MAIN
from megflow_mp.registry import builtin_registry
from megflow_mp.runtime.channels import CLOSE, CTRL, DATA
from megflow_mp.video.source import ReaderOptions
from megflow_mp.video.stream import Stream
from tests.support.clips import make_clip, read_index
from tests.support.inproc import InProc

APP = '''main = "g"
[[graphs]]
name = "sub"
inputs = [{ name = "inp", cap = 16, ports = ["t:inp"] }]
outputs = [{ name = "out", cap = 16, ports = ["t:out"] }]
nodes = [{ name = "t", ty = "Transform" }]
[[graphs]]
name = "g"
nodes = [{ name = "v", ty = "VideoInput" }, { name = "s", ty = "sub" }]
connections = [{ cap = 16, ports = ["v:out", "s:inp"] }, { cap = 16, ports = ["s:out", "v:inp"] }]
'''
FRAMES = 5


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return str(make_clip(tmp_path_factory.mktemp("clip") / "c.mp4", frames=FRAMES, size=(320, 192)))


class Host:
    """The process hosting the instance's Transform, as the creator sees it."""

    def __init__(self, w: InProc, results=(), failure=None):
        self.w, self.results, self.failure = w, list(results), failure
        self.proc = w.app.decl_procs["sub/t"][0]
        self.inst = None
        w.sent.on_post = self.on_post

    def on_post(self, proc, record):
        hub = self.w.worker.hub
        if record[0] == CTRL:
            msg = pickle.loads(record[1])
            if msg[0] == "install":
                self.inst = msg[1]
                hub.call_later(0, self.w.worker.on_installed, self.proc, self.inst, self.proc, None)
            elif msg[0] == "start" and self.failure is not None:
                hub.call_later(0, self.w.worker.on_route_failed, self.proc, self.inst, self.failure)
        elif record[0] == CLOSE and proc == self.proc:  # the stream's input ended: the instance finishes
            hub.call_later(0, self.finish)

    def finish(self):
        exit_chan = self.stream.child.exits["out"].chan
        self.w.feed(exit_chan, *[Envelope.pack(m) for m in self.results], src=self.proc)
        self.w.close_chan(exit_chan, src=self.proc)
        self.w.worker.on_ended(self.proc, self.inst, "g/s#0/t", None)


@pytest.fixture
def creator():
    w = InProc(APP, "g/v", builtin_registry())
    assert w.install_static() == [None]
    yield w
    w.close()


def stream_of(w: InProc, clip, host: Host) -> Stream:
    node = w.nodes(MAIN)["g/v"]
    stream = Stream(0, clip, ReaderOptions(), w.worker, node, node.spec.dynamic["out"], "out", max_msgs=2)
    host.stream = stream
    return stream


def run(w, stream):
    stream.open()
    w.run(lambda: stream.attach("g/s"))
    w.run_until(lambda: stream.done.done, timeout=30)


def test_every_frame_goes_into_the_instance_in_order_then_the_stream_finishes(creator, clip):
    host = Host(creator, results=["a", "b", "c"])
    stream = stream_of(creator, clip, host)
    run(creator, stream)
    frames = [(p, e) for p, _, e in creator.decoded(DATA) if p == host.proc]
    assert [e.partial_id for _, e in frames] == list(range(FRAMES))
    assert all(e.from_addr == 0 and e.msg["data"].shape == (192, 320, 3) for _, e in frames)
    assert [read_index(e.msg["data"]) for _, e in frames] == list(range(FRAMES))
    info = stream.info()
    assert (info["state"], info["reason"], info["frames"]) == ("finished", None, FRAMES)
    # max_msgs = 2: the oldest message was dropped and counted
    assert stream.take_messages() == ["b", "c"] and info["messages_dropped"] == 1
    assert stream.child is None and stream.reader is None  # an ended stream lets its instance go


def test_a_failure_in_the_instance_is_the_stream_error(creator, clip):
    failure = NodeFailure("g/s#0/t", "instance 9", "ValueError", "Traceback...\nValueError: bad frame")
    host = Host(creator, failure=failure)
    stream = stream_of(creator, clip, host)
    run(creator, stream)
    info = stream.info()
    assert info["state"] == "error" and info["reason"] == "node 'g/s#0/t' failed: ValueError: bad frame"


def test_json_values_stay_objects_and_what_json_cannot_hold_is_shown_with_str(creator, clip):
    host = Host(creator, results=[{"boxes": [1, 2]}, "s", {"a": np.zeros(2, np.uint8)}])
    stream = stream_of(creator, clip, host)
    delivered = []
    stream.deliver = delivered.extend
    run(creator, stream)
    assert stream.take_messages() == ["s", {"a": "[0 0]"}] and stream.warned_type  # max_msgs = 2
    assert [(sid, text) for sid, _, text in delivered] == [(0, '{"boxes":[1,2]}'), (0, '"s"'), (0, '{"a":"[0 0]"}')]
    assert all(isinstance(ts, float) for _, ts, _ in delivered)


def test_stop_ends_the_stream_as_stopped(creator, clip):
    host = Host(creator)
    stream = stream_of(creator, clip, host)
    stream.stop()  # before decoding: nothing more is read
    run(creator, stream)
    assert stream.info()["state"] == "stopped"
