"""IouTracker: stable ids while boxes overlap, one end per track, classes kept apart."""

import pytest

from megflow_mp.models.detect import Detection
from megflow_mp.models.track import IouTracker, iou


def det(x, y=0, w=100, h=100, cls=15, label="cat", score=0.9):
    return Detection((x, y, x + w, y + h), score, cls, label)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 0, 10), (0, 0, 0, 10)) == 0.0


def test_moving_object_keeps_its_id_and_ends_once_after_leaving():
    t = IouTracker(iou=0.3, max_missed=2)
    first = t.update([det(0)])
    assert [tr.id for tr in first.new] == [0]
    for x in range(20, 200, 20):                      # moves 20 px per frame: IoU 0.67
        u = t.update([det(x)])
        assert not u.new and not u.ended and [tr.id for tr in u.live] == [0]
    assert t.update([]).ended == [] and t.update([]).ended == []
    ended = t.update([]).ended
    assert [(tr.id, tr.hits, tr.first, tr.last) for tr in ended] == [(0, 10, 0, 9)]
    assert len(t) == 0 and t.update([]).ended == []


def test_jump_starts_a_new_track_and_classes_do_not_mix():
    t = IouTracker(iou=0.5, max_missed=0)
    t.update([det(0), det(0, cls=3, label="motorbike")])
    u = t.update([det(300), det(5, cls=3, label="motorbike")])
    assert [tr.id for tr in u.new] == [2]            # the cat jumped: a new track
    assert [tr.id for tr in u.ended] == [0]          # and the old one ended at once (max_missed=0)
    assert [(tr.id, tr.label) for tr in u.live] == [(1, "motorbike"), (2, "cat")]


def test_two_objects_matched_greedily_by_overlap():
    t = IouTracker()
    t.update([det(0), det(150)])
    u = t.update([det(160), det(10)])                 # order swapped in the detector output
    assert {tr.id: tr.box[0] for tr in u.live} == {0: 10, 1: 160}


def test_finish_ends_live_tracks_and_bad_args():
    t = IouTracker()
    t.update([det(0), det(300)])
    assert [tr.id for tr in t.finish()] == [0, 1] and len(t) == 0
    with pytest.raises(ValueError, match="iou"):
        IouTracker(iou=0)
    with pytest.raises(ValueError, match="max_missed"):
        IouTracker(max_missed=-1)
