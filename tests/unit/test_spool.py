"""The disk spool: durable appends in order, a bound, delivery that stops at the first failure."""

import os

import pytest

from megflow_mp.spool import Spool, spool_dir


def test_entries_come_back_in_order_and_leave_once_sent(tmp_path):
    spool = Spool(tmp_path / "s")
    ids = [spool.append(f"v{i}") for i in range(5)]
    assert spool.ids() == ids == sorted(ids) and spool.values() == [f"v{i}" for i in range(5)]
    sent = []
    assert spool.deliver(lambda i, v: sent.append((i, v))) == 5
    assert sent == list(zip(ids, [f"v{i}" for i in range(5)]))
    assert len(spool) == 0


def test_delivery_stops_at_the_first_failure_and_keeps_the_rest(tmp_path):
    spool = Spool(tmp_path)
    for v in "abc":
        spool.append(v)

    def send(entry_id, value):
        if value == "b":
            raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        spool.deliver(send)
    assert spool.values() == ["b", "c"]
    assert Spool(tmp_path).values() == ["b", "c"]  # what a new process finds


def test_the_oldest_entries_go_beyond_the_limit(tmp_path):
    spool = Spool(tmp_path, limit=3)
    for v in "abcde":
        spool.append(v)
    assert spool.values() == ["c", "d", "e"] and spool.dropped == 2


def test_a_write_cut_short_is_never_seen(tmp_path):
    spool = Spool(tmp_path)
    (tmp_path / ".tmp-00000000000000000001-0000001-000000000").write_text("half")
    spool.append("whole")
    assert spool.values() == ["whole"]


def test_the_default_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert spool_dir() == tmp_path / "megflow-mp" / "spool"
    assert spool_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert spool_dir() == type(tmp_path)(os.getcwd()) / ".megflow-mp" / "spool"
