"""megflow_mp.live.overlay (FrameSync, draw_boxes) and the Visualize node (run in-process)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from megflow_mp import Envelope
from megflow_mp.live import VIEW_KEY, view_frame
from megflow_mp.live.overlay import RED, Box, FrameSync, draw_boxes
from megflow_mp.registry import builtin_registry
from megflow_mp.testing import run_node


def img(i: int = 0) -> np.ndarray:
    return np.full((100, 200, 3), i, np.uint8)


def test_frames_wait_for_their_result_and_boxes_move_in_between():
    sync = FrameSync()
    assert sync.add_frame(0, img(0)) == [] and sync.add_frame(1, img(1)) == []
    ready = sync.add_result(0, [Box((0, 0, 10, 10), key=1)])
    assert [(i, b[0].xyxy) for i, _, _, b in ready] == [(0, (0, 0, 10, 10))]
    for i in (2, 3, 4):
        assert sync.add_frame(i, img(i)) == []
    ready = sync.add_result(4, [Box((40, 0, 50, 10), key=1), Box((0, 50, 5, 55), key=2)])
    assert [i for i, *_ in ready] == [1, 2, 3, 4]
    assert [b[0].xyxy[0] for _, _, _, b in ready] == [10, 20, 30, 40]  # track 1 glides from x=0 to x=40
    assert [len(b) for _, _, _, b in ready] == [1, 1, 1, 2]  # track 2 appears with its own result
    assert sync.add_frame(3, img(3))[0][3] == ready[-1][3]  # a frame already past: out at once, latest boxes


def test_an_object_that_left_keeps_its_last_box_until_the_next_result():
    sync = FrameSync()
    sync.add_result(0, [Box((0, 0, 10, 10), key=7)])
    sync.add_frame(1, img())
    ready = sync.add_result(2, [])
    assert ready[0][3][0].xyxy == (0, 0, 10, 10)


def test_at_most_max_pending_frames_are_held():
    sync = FrameSync(max_pending=3)
    out = []
    for i in range(5):
        out += sync.add_frame(i, img(i))
    assert [i for i, *_ in out] == [0, 1] and len(sync.frames) == 3
    assert [i for i, *_ in sync.flush()] == [2, 3, 4] and not sync.frames


def test_draw_boxes_draws_on_a_copy():
    frame = img(0)
    out = draw_boxes(frame, [Box((20, 30, 80, 90), "cat 0.9", RED)])
    assert not frame.any()  # the input is untouched
    assert tuple(out[60, 20]) == RED and tuple(out[90, 50]) == RED  # left and bottom edges
    assert tuple(out[60, 50]) == (0, 0, 0)  # inside: only the outline


def visualize(inputs, **args):
    return run_node("Visualize", args=args, inputs={"inp": inputs}, registry=builtin_registry())["out"]


def test_visualize_sends_each_frame_as_a_view_message_with_its_envelope_info():
    out = visualize([Envelope.pack({"data": img(5), "objects": []}, {"partial_id": 3, "from_addr": 1}), img(6)],
                    crf=30, keyint=60)
    assert [e.partial_id for e in out] == [3, None] and out[0].from_addr == 1
    frame, encode = view_frame(out[0].msg)
    assert frame.shape == (100, 200, 3) and frame[0, 0, 0] == 5 and encode == {"crf": 30.0, "keyint": 60}
    assert view_frame(out[1].msg)[0][0, 0, 0] == 6  # a bare array is a frame too
    assert view_frame({"data": img()}) is None and VIEW_KEY not in {"data": 1}


def test_visualize_drops_what_is_not_a_bgr_frame_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="megflow_mp"):
        out = visualize([{"data": "text"}, {"data": np.zeros((4, 4), np.uint8)}, {"other": img()}],
                        key="data")
    assert out == []
    assert len([r for r in caplog.records if "expected a BGR frame" in r.getMessage()]) == 1


@pytest.mark.parametrize("key", ["data", "frame"])
def test_visualize_reads_the_configured_key(key):
    out = visualize([{key: img(9)}], key=key)
    assert view_frame(out[0].msg)[0][0, 0, 0] == 9


def test_visualize_fps_passes_at_most_that_many_frames_a_second():
    out = visualize([img(i) for i in range(5)], fps=1)  # all five arrive within far less than a second
    assert [view_frame(e.msg)[0][0, 0, 0] for e in out] == [0]
