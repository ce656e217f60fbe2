"""video.messages: encoding, numbering, rings, gaps, consumers and the numbers file, in-process."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from megflow_mp.video.messages import ALL, MessageLog, SeqFile, encode_message


class Loop:
    """A stand-in for a consumer's event loop: counts the wake-ups it was asked for."""

    def __init__(self):
        self.calls = 0

    def call_soon_threadsafe(self, fn, *args):
        self.calls += 1
        fn(*args)


def batch(sid, n, text='"x"'):
    return [(sid, 1765142400.5, text)] * n


def consumer(log, sid, after=None):
    return log.subscribe(sid, after, Loop(), asyncio.Event())


def test_strings_stay_strings_json_values_stay_objects_and_the_rest_is_str():
    assert encode_message("a") == ("a", '"a"', False)
    value, text, lossy = encode_message({"boxes": [[1, 2]], "n": 3, "ok": True, "none": None})
    assert value == {"boxes": [[1, 2]], "n": 3, "ok": True, "none": None} and not lossy
    assert json.loads(text) == value
    value, text, lossy = encode_message({"a": np.arange(3), "b": b"\x00", "f": float("nan"), 5: (1, 2)})
    assert lossy and value == {"a": "[0 1 2]", "b": "b'\\x00'", "f": "nan", "5": [1, 2]}
    assert json.loads(text) == value


def test_each_stream_is_numbered_from_0_and_the_cursor_counts_all():
    log = MessageLog()
    records = log.append_many(batch("gate", 2) + batch(0, 1) + batch("gate", 1))
    assert [(r.sid, r.seq, r.cursor) for r in records] == [("gate", 0, 0), ("gate", 1, 1), (0, 0, 2), ("gate", 2, 3)]
    assert records[3].message() == {"stream": "gate", "seq": 2, "ts": 1765142400.5, "message": "x"}
    assert records[2].data == '{"stream":0,"seq":0,"ts":1765142400.5,"message":"x"}'


def test_consumers_each_get_every_message_in_order_from_where_they_are():
    log = MessageLog()
    log.append_many(batch("gate", 3))
    late, everything, all_streams = consumer(log, "gate"), consumer(log, "gate", -1), consumer(log, ALL)
    log.append_many(batch("gate", 2) + batch("yard", 1))
    assert [r.seq for r in log.read(late, 100)[1]] == [3, 4]
    assert [r.seq for r in log.read(everything, 100)[1]] == [0, 1, 2, 3, 4]
    assert [(r.sid, r.cursor) for r in log.read(all_streams, 2)[1]] == [("gate", 3), ("gate", 4)]
    assert [(r.sid, r.cursor) for r in log.read(all_streams, 2)[1]] == [("yard", 5)]
    gap, records, closed = log.read(late, 100)
    assert (gap, records, closed) == (None, [], False) and late.waiting and not late.event.is_set()
    log.append_many(batch("gate", 1))  # wakes the waiting consumer once
    assert late.event.is_set() and late.loop.calls == 1 and not late.waiting
    log.append_many(batch("gate", 1))  # it did not wait meanwhile: no second wake-up
    assert late.loop.calls == 1 and [r.seq for r in log.read(late, 100)[1]] == [5, 6]


def test_a_consumer_behind_the_buffer_gets_a_gap_then_the_oldest_kept():
    log = MessageLog(keep=5, keep_all=8)
    slow, slow_all = consumer(log, "gate", -1), consumer(log, ALL, -1)
    log.append_many(batch("gate", 12))
    gap, records, _ = log.read(slow, 100)
    assert (gap.after, gap.next, gap.missed) == (-1, 7, 7) and [r.seq for r in records] == [7, 8, 9, 10, 11]
    assert json.loads(gap.data()) == {"stream": "gate", "last_event_id": -1, "next": 7, "missed": 7}
    gap, records, _ = log.read(slow_all, 100)
    assert (gap.next, gap.missed, len(records)) == (4, 4, 8) and json.loads(gap.data())["stream"] is None
    future = consumer(log, "gate", 50)  # an id this log never gave: everything kept, after a gap saying so
    gap, records, _ = log.read(future, 100)
    assert gap.missed is None and [r.seq for r in records] == [7, 8, 9, 10, 11]


def test_numbers_continue_after_a_kill_and_exactly_after_a_clean_stop(tmp_path):
    path = tmp_path / "v.seqs.json"
    log = MessageLog(SeqFile(path, "video/server", block=10, block_all=20))
    log.append_many(batch("gate", 7) + batch(3, 2))
    # killed: nothing closed; what the file holds is above every number handed out
    again = MessageLog(SeqFile(path, "video/server", block=10, block_all=20))
    first = again.append_many(batch("gate", 1) + batch(3, 1))
    assert first[0].seq >= 7 and first[1].seq >= 2 and first[0].cursor >= 9
    for n in range(40):  # reservations renewed as numbers are used: never reused after another kill
        again.append_many(batch("gate", 1))
    top = again.next["gate"]
    third = MessageLog(SeqFile(path, "video/server", block=10, block_all=20))
    assert third.append_many(batch("gate", 1))[0].seq >= top
    third.close()  # a clean stop: the exact next numbers, no gap
    data = json.loads(path.read_text())
    assert data["node"] == "video/server" and dict(map(tuple, data["streams"]))["gate"] == third.next["gate"]
    assert data["cursor"] == third.cursor and isinstance(dict(map(tuple, data["streams"]))[3], int)
    fourth = MessageLog(SeqFile(path, "video/server"))
    assert fourth.append_many(batch("gate", 1))[0].seq == third.next["gate"]


def test_a_foreign_numbers_file_is_a_warning_and_numbers_start_at_0(tmp_path, caplog):
    path = tmp_path / "v.seqs.json"
    path.write_text('{"format": "something else"}')
    log = MessageLog(SeqFile(path, "video/server"))
    assert log.append_many(batch("gate", 1))[0].seq == 0
    assert "not usable" in caplog.text


def test_close_ends_every_consumer():
    log = MessageLog()
    sub = consumer(log, ALL)
    assert log.read(sub, 10)[1] == [] and sub.waiting
    log.close()
    assert sub.event.is_set() and log.read(sub, 10)[2] is True


def test_a_stream_that_left_the_server_leaves_its_ring_and_an_integer_id_its_number(tmp_path):
    path = tmp_path / "v.seqs.json"
    log = MessageLog(SeqFile(path, "video/server", block=10, block_all=20))
    log.append_many(batch("gate", 3) + batch(3, 2))
    log.forget(3)
    log.forget("gate")
    assert 3 not in log.rings and "gate" not in log.rings
    assert 3 not in log.next and log.next["gate"] == 3  # a name may start again: it keeps its numbers
    assert [r.seq for r in log.append_many(batch("gate", 1))] == [3]
    log.close()
    streams = dict(map(tuple, json.loads(path.read_text())["streams"]))
    assert 3 not in streams and streams["gate"] == 4
