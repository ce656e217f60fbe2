"""megflow_mp.live.channel: encode only while watched, one encoding for all viewers, a viewer starts
at a keyframe after the init segment, a viewer that falls behind skips ahead and is finally dropped."""

from __future__ import annotations

import asyncio
import io
import threading

import av
import numpy as np
import pytest

from megflow_mp.live.channel import LiveChannel


def frame(i: int) -> np.ndarray:
    f = np.full((240, 320, 3), 80, np.uint8)
    f[50:90, 10 + 3 * i: 50 + 3 * i] = (0, 0, 255)
    return f


class Feeder:
    """Offers frames to a channel from a thread (as the VideoServer's hub does), until stopped."""

    def __init__(self, channel: LiveChannel, noise: bool = False):
        self.channel, self.noise, self.stop = channel, noise, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        rng = np.random.default_rng(0)
        i = 0
        while not self.stop.wait(1 / 60):
            f = frame(i % 60)
            if self.noise:
                f[120:240] = rng.integers(0, 256, (120, 320, 3), np.uint8)
            self.channel.offer(f)
            i += 1

    def close(self):
        self.stop.set()
        self.thread.join(5)


async def take(viewer, n_bytes: int, timeout: float = 20) -> bytes:
    """Read the viewer's chunks until at least ``n_bytes`` came."""
    data = b""

    async def read():
        nonlocal data
        async for chunk in viewer.chunks():
            data += chunk
            if len(data) >= n_bytes:
                return

    await asyncio.wait_for(read(), timeout)
    return data


def boxes(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        if pos + size > len(data):
            break
        out.append(data[pos + 4:pos + 8])
        pos += size
    return out


def test_no_viewer_no_encoding():
    channel = LiveChannel("test")
    for i in range(20):
        channel.offer(frame(i))
    stats = channel.stats()
    assert stats["frames_in"] == 20 and stats["frames_encoded"] == 0 and not stats["encoding"]
    assert channel.thread is None


def test_viewers_start_with_init_then_keyframe_and_share_the_fragments():
    channel = LiveChannel("test")
    feeder = Feeder(channel)

    async def main():
        one = channel.add_viewer()
        first = await take(one, 30_000)
        two = channel.add_viewer()  # joins later: gets its own init segment and starts at a (requested) keyframe
        second = await take(two, 20_000)
        more = await take(one, 20_000)
        channel.remove_viewer(one)
        channel.remove_viewer(two)
        return first, second, first + more

    try:
        first, second, whole = asyncio.run(main())
    finally:
        feeder.close()
    for data in (first, second):
        kinds = boxes(data)
        assert kinds[:3] == [b"ftyp", b"moov", b"moof"]
        with av.open(io.BytesIO(data), format="mp4") as f:
            packets = [p for p in f.demux(video=0) if p.size]
            assert packets[0].is_keyframe
    # the later viewer's fragments are byte for byte fragments the first viewer got: one encoding
    start = second.index(b"moof") - 4
    assert second[start:start + 2000] in whole
    stats = channel.stats()
    assert stats["viewers"] == 0 and stats["keyframes"] >= 2
    channel.thread and channel.thread.join(5)
    assert channel.thread is None  # the last viewer gone: the encoder thread ended


def test_a_viewer_that_never_reads_skips_then_is_dropped():
    channel = LiveChannel("test", max_queue=64 << 10, max_skips=3)
    feeder = Feeder(channel, noise=True)

    got = bytearray()

    async def main():
        stalled = channel.add_viewer()
        reader = channel.add_viewer()

        async def read():
            async for chunk in reader.chunks():
                got.extend(chunk)

        reading = asyncio.create_task(read())  # the other viewer reads all along
        deadline = asyncio.get_running_loop().time() + 20
        while not stalled.closed and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        before = len(got)
        while len(got) < before + 200_000 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        channel.remove_viewer(reader)
        await reading
        return stalled, reader

    try:
        stalled, reader = asyncio.run(main())
    finally:
        feeder.close()
    assert stalled.closed and stalled.skips > 3
    assert reader.skips == 0 and channel.stats()["viewers_dropped"] == 1
    assert len(got) >= 200_000 and bytes(got[4:8]) == b"ftyp"


def test_close_ends_every_viewer():
    channel = LiveChannel("test")
    feeder = Feeder(channel)

    async def main():
        viewer = channel.add_viewer()
        await take(viewer, 10_000)
        channel.close()
        rest = [chunk async for chunk in viewer.chunks()]  # what was queued, then the end
        late = channel.add_viewer()
        return rest, late

    try:
        rest, late = asyncio.run(main())
    finally:
        feeder.close()
    assert isinstance(rest, list) and late.closed and channel.stats()["ended"]


@pytest.mark.parametrize("size", [(1280, 720), (642, 362)])
def test_frames_of_another_size_restart_the_encoder(size):
    channel = LiveChannel("test")
    stop = threading.Event()

    def feed():
        i = 0
        while not stop.wait(1 / 60):
            channel.offer(frame(i % 60) if i < 10 else np.full((size[1], size[0], 3), 50, np.uint8))
            i += 1

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()

    async def main():
        viewer = channel.add_viewer()
        data = b""
        async for chunk in viewer.chunks():
            data += chunk
            if data.count(b"moov") >= 2 and data.rfind(b"mdat") > data.rfind(b"moov"):
                break
        channel.remove_viewer(viewer)
        return data

    try:
        data = asyncio.run(asyncio.wait_for(main(), 20))
    finally:
        stop.set()
        thread.join(5)
    assert data.count(b"ftyp") == 2  # a new init segment for the new size
    assert channel.stats()["size"] == [size[0] - size[0] % 2, size[1] - size[1] % 2]
