"""The sinks' spool, a segment log: order and acknowledgements across reopens and segments, a torn
tail cut off, the byte bound dropping the oldest, and a writer killed with SIGKILL losing nothing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from megflow_mp.sinks.log import CURSOR, SegmentLog, frame, pending

SRC = str(Path(__file__).resolve().parents[2] / "src")


def drain(log, n=1000):
    start, values = log.peek(n)
    log.ack(start + len(values))
    return values


def everything(log):
    out = []
    while True:
        start, values = log.peek(7)
        if not values:
            return out
        out += values
        log.ack(start + len(values))


def segments(path):
    return sorted(path.glob("*.seg"))


@pytest.mark.parametrize("fsync", [False, True])
def test_records_come_back_in_order_and_acknowledged_ones_never_again_across_reopen(tmp_path, fsync):
    log = SegmentLog(tmp_path, cursor_interval=0, fsync=fsync)
    for i in range(10):
        log.append(f"v{i}")
    start, values = log.peek(4)
    assert values == ["v0", "v1", "v2", "v3"] and log.peek(4) == (start, values)  # left in place
    log.ack(start + 4)
    assert len(log) == 6 and log.bytes == 12
    again = SegmentLog(tmp_path)  # no close(): what a kill leaves (the cursor was written at the ack)
    assert len(again) == 6 and again.peek(100)[1] == [f"v{i}" for i in range(4, 10)]
    again.append("v10")
    again.ack(again.peek(3)[0] + 3)
    again.close()
    third = SegmentLog(tmp_path)
    assert everything(third) == [f"v{i}" for i in range(7, 11)]
    third.close()
    assert not segments(tmp_path) and not (tmp_path / CURSOR).exists() and pending(tmp_path) == 0


def test_many_segments_read_back_from_disk_and_deleted_once_acknowledged(tmp_path):
    log = SegmentLog(tmp_path, segment_bytes=200, memory_bytes=100, cursor_interval=0)
    values = [f"record-{i:04d}-" + "x" * (i % 13) for i in range(300)]
    for v in values[:150]:
        log.append(v)
    before = len(segments(tmp_path))
    assert before > 15 and pending(tmp_path) == 150
    got = []
    for _ in range(10):
        got += drain(log, 5)
    assert got == values[:50] and pending(tmp_path) == 100
    assert len(segments(tmp_path)) <= before - 5  # the ones behind the cursor are gone
    for v in values[150:]:
        log.append(v)
    got += everything(log)
    assert got == values and len(segments(tmp_path)) == 1
    # the reader kept up: the same from memory, one record per peek or many
    for v in values[:20]:
        log.append(v)
        assert drain(log, 1) == [v]


def test_a_torn_last_record_is_cut_off_and_the_log_goes_on(tmp_path):
    log = SegmentLog(tmp_path)
    for i in range(5):
        log.append(f"whole-{i}")
    del log
    seg = segments(tmp_path)[-1]
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(frame(b"half-written record")[:15])  # a kill in the middle of a write
    again = SegmentLog(tmp_path)
    assert again.peek(10)[1] == [f"whole-{i}" for i in range(5)] and seg.stat().st_size == size
    again.append("after")
    third = SegmentLog(tmp_path)
    assert everything(third) == [f"whole-{i}" for i in range(5)] + ["after"]


def test_a_damaged_record_ends_its_segment(tmp_path):
    log = SegmentLog(tmp_path)
    for i in range(3):
        log.append(f"r{i}")
    del log
    seg = segments(tmp_path)[-1]
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF  # the last record's bytes, not what its checksum says (a power loss without fsync)
    seg.write_bytes(bytes(data))
    assert pending(tmp_path) == 2 and SegmentLog(tmp_path).peek(10)[1] == ["r0", "r1"]
    zeros = tmp_path / "z"
    log = SegmentLog(zeros)
    log.append("kept")
    del log
    with open(segments(zeros)[-1], "ab") as f:
        f.write(b"\0" * 64)  # a file extended but never written
    assert SegmentLog(zeros).peek(10)[1] == ["kept"]


def test_the_byte_bound_drops_the_oldest_counted_across_segments_and_reopen(tmp_path):
    log = SegmentLog(tmp_path, max_bytes=100, segment_bytes=60)
    for i in range(30):
        log.append(f"{i:09d}")  # 9 bytes each: 11 fit
    assert log.dropped == 19 and log.bytes == 99 and len(log) == 11
    assert log.peek(100)[1] == [f"{i:09d}" for i in range(19, 30)]
    assert sum(p.stat().st_size for p in segments(tmp_path)) <= 100 + 11 * 8 + 60
    log.append("x" * 500)  # alone over the bound: the newest is kept, the rest goes
    assert log.peek(100)[1] == ["x" * 500] and log.dropped == 30
    log.close()
    again = SegmentLog(tmp_path, max_bytes=100)
    assert again.peek(100)[1] == ["x" * 500]


def test_a_batch_dropped_while_in_flight_is_not_acknowledged_twice(tmp_path):
    log = SegmentLog(tmp_path, max_bytes=40)
    for i in range(4):
        log.append(f"{i:09d}")
    start, values = log.peek(4)  # being sent...
    for i in range(4, 6):
        log.append(f"{i:09d}")  # ...while the oldest two are dropped
    log.ack(start + len(values))
    assert log.peek(10)[1] == ["000000004", "000000005"] and log.dropped == 2


WRITER = """
import sys
from megflow_mp.sinks.log import SegmentLog
log = SegmentLog(sys.argv[1], segment_bytes=4096, memory_bytes=2048)
i = 0
while True:
    log.append(f"m{i}")
    i += 1
    if i % 50 == 0:
        start, values = log.peek(30)  # a delivery that lags behind
        log.ack(start + len(values))
        print(i, start + len(values), flush=True)
"""


def test_a_writer_killed_with_sigkill_loses_nothing_and_keeps_the_order(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SRC})
    try:
        deadline = time.monotonic() + 60
        appended = acked = 0
        while appended < 20_000:
            assert time.monotonic() < deadline
            appended, acked = map(int, proc.stdout.readline().split())
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    log = SegmentLog(tmp_path)
    got = [int(v[1:]) for v in everything(log)]
    assert got == list(range(got[0], got[0] + len(got)))  # in order, none missing
    assert got[0] <= acked and got[-1] >= appended - 1  # every record not acknowledged is there
    assert acked - got[0] < 20_000 and len(segments(tmp_path)) == 1
