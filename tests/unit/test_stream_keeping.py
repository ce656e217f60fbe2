"""What keeps a VideoServer's streams: ids and options (spec), the state file, the restart budget,
the latency window."""

from __future__ import annotations

import json
import logging
import os

import pytest

from megflow_mp.video.healing import RestartBudget
from megflow_mp.video.latency import Latency
from megflow_mp.video.source import ReaderOptions
from megflow_mp.video.spec import StreamOptions, declared_streams, name_problem, parse_sid, sid_order
from megflow_mp.video.state import ENV, FORMAT, StreamStore, state_dir


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


# -- ids and options ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gate", "cam-1", "a.b_c", "x" * 64, "0a"])
def test_names_a_stream_may_have(name):
    assert name_problem(name) is None
    assert parse_sid(name) == name


@pytest.mark.parametrize("name,words", [("", "1 to 64"), ("x" * 65, "1 to 64"), ("a b", "1 to 64"), ("a/b", "1 to 64"),
                                        ("12", "digits only"), (7, "a string")])
def test_names_refused_say_why(name, words):
    assert words in name_problem(name)


def test_digits_in_a_route_are_megflow_ids_and_mixed_ids_sort():
    assert parse_sid("12") == 12 and parse_sid("gate") == "gate"
    assert parse_sid("\u00b2") == "\u00b2" and parse_sid("\u0663") == "\u0663"  # digits to str.isdigit, not to int()
    assert sorted([3, "b", 0, "a"], key=sid_order) == [0, 3, "a", "b"]


def test_stream_options_apply_over_the_node_options_and_refuse_unknown_or_bad_values():
    base = ReaderOptions(read_timeout=5.0, queue_size=8)
    got = StreamOptions(read_timeout=2, on_error="end").reader(base)
    assert got.read_timeout == 2 and got.queue_size == 8
    assert StreamOptions().reader(base) is base
    with pytest.raises(ValueError):
        StreamOptions(read_timout=2)
    with pytest.raises(ValueError):
        StreamOptions(on_error="retry")
    with pytest.raises(ValueError):
        StreamOptions(read_timeout=0)


def test_declared_streams_are_checked_with_the_entry_named():
    specs = declared_streams([{"id": "gate", "url": "rtsp://h/s", "read_timeout": 3, "on_error": "end"}], "srv")
    assert specs[0].id == "gate" and specs[0].options.read_timeout == 3 and specs[0].options.on_error == "end"
    for bad, words in [([{"url": "rtsp://h/s"}], "streams[0] needs both an id and a url"),
                       ([{"id": "12", "url": "rtsp://h/s"}], "streams[0].id: a stream id of digits only"),
                       ([{"id": "a", "url": "u"}, {"id": "a", "url": "v"}], "streams[1].id: 'a' is declared twice"),
                       ([{"id": "a", "url": "u", "read_timout": 1}], "streams[0] (a): read_timout"),
                       ("rtsp://h/s", "must be a list")]:
        with pytest.raises(ValueError, match="VideoServer 'srv'") as err:
            declared_streams(bad, "srv")
        assert words in str(err.value)


# -- the state file --------------------------------------------------------------------------------------------
def test_state_dir_node_arg_then_flag_then_a_per_app_default(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    a, b = state_dir(None, str(tmp_path / "one" / "app.toml")), state_dir(None, str(tmp_path / "two" / "app.toml"))
    assert a.parent == tmp_path / "xdg" / "megflow-mp" and a.name.startswith("app-") and a != b
    monkeypatch.setenv(ENV, str(tmp_path / "flag"))
    assert state_dir(None, "x.toml") == tmp_path / "flag"
    assert state_dir(str(tmp_path / "arg"), "x.toml") == tmp_path / "arg"


def test_the_store_records_and_forgets_atomically_and_a_new_store_reads_it(tmp_path):
    store = StreamStore(tmp_path / "state", "video/server")
    assert store.load() == []
    store.put("gate", "rtsp://u:p@h/s", {"read_timeout": 3.0})
    store.put(4, "/clips/a.mp4", {})
    store.forget("nothing")
    assert store.path.name == "video_server.json" and oct(store.path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in store.path.parent.iterdir()] == [store.path.name]  # no temporary file left
    again = StreamStore(tmp_path / "state", "video/server").load()
    assert again == [{"id": "gate", "url": "rtsp://u:p@h/s", "options": {"read_timeout": 3.0}},
                     {"id": 4, "url": "/clips/a.mp4", "options": {}}]
    store.forget("gate")
    assert [r["id"] for r in StreamStore(tmp_path / "state", "video/server").load()] == [4]


@pytest.mark.parametrize("content,words", [
    ("{not json", "not JSON"),
    (json.dumps({"format": "something else"}), "not a megflow-mp streams file"),
    (json.dumps({"format": FORMAT, "version": 1, "node": "other/node", "streams": []}), "belongs to node 'other/node'"),
    (json.dumps({"format": FORMAT, "version": 99, "node": "video/server", "streams": []}), "version 99"),
    (json.dumps({"format": FORMAT, "version": 1, "node": "video/server"}), "'streams'"),
])
def test_a_corrupt_or_foreign_state_file_is_one_warning_and_moved_aside(tmp_path, caplog, content, words):
    store = StreamStore(tmp_path, "video/server")
    store.path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="megflow_mp"):
        assert store.load() == []
    assert len(caplog.records) == 1 and words in caplog.text and str(store.path) in caplog.text
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("video_server.json.bad-")]
    assert len(aside) == 1 and aside[0].read_text() == content and not store.path.exists()
    store.put("gate", "rtsp://h/s", {})  # the server goes on recording
    assert StreamStore(tmp_path, "video/server").load()[0]["id"] == "gate"


def test_a_state_directory_that_cannot_be_written_is_one_warning(tmp_path, caplog):
    if os.geteuid() == 0:  # root writes anywhere: make the directory a file instead
        (tmp_path / "ro").write_text("")
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
    store = StreamStore(tmp_path / "ro" / "state", "s")
    with caplog.at_level(logging.WARNING, logger="megflow_mp"):
        store.put("a", "rtsp://h/a", {})
        store.put("b", "rtsp://h/b", {})
    assert len(caplog.records) == 1 and "cannot be written" in caplog.text


# -- restart budget ----------------------------------------------------------------------------------------------
def test_restart_budget_backs_off_is_bounded_in_a_window_and_recovers():
    clock = Clock()
    budget = RestartBudget(limit=3, window=60, initial=0.5, cap=1.5, clock=clock)
    assert [budget.next_delay() for _ in range(3)] == [0.5, 1.0, 1.5]
    assert budget.next_delay() is None  # a 4th within 60 s
    clock.now += 61  # a quiet window: a fresh budget, from the first delay again
    assert budget.next_delay() == 0.5
    clock.now += 30
    assert budget.next_delay() == 1.0


# -- latency ------------------------------------------------------------------------------------------------------
def test_latency_matches_results_to_their_frames_and_bounds_what_waits():
    clock = Clock()
    lat = Latency((0.1, 0.5, 1.0), window=10, pending=3, clock=clock)
    assert lat.percentiles() == (None, None)
    for i in range(5):
        lat.sent(i, clock.now - 0.2 * i)  # frame i decoded 0.2*i s ago
    assert list(lat.decoded) == [2, 3, 4]  # the oldest forgotten
    lat.result(0)  # forgotten: not counted
    lat.result(2)
    lat.result(4)
    lat.result("not a frame")
    assert lat.hist.counts == [0, 1, 1, 0] and lat.percentiles() == (800.0, 800.0)
    clock.now += 11
    assert lat.percentiles() == (None, None)  # the window moved on; the histogram keeps them
    assert sum(lat.hist.counts) == 2
