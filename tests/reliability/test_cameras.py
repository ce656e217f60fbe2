"""Cameras: a real RTSP server (GStreamer, tests/support/rtsp.py) killed and started again, a camera
that stalls (SIGSTOP: its socket stays open, no packet comes), several cameras at once with one
of them stalled, and a camera whose RTP payloads arrive damaged (a proxy between the VideoServer and
the server, tests/support/mangle_proxy.py). Asserted: the streams come back (running, frames moving),
the good cameras keep running, and a damaged camera stays running with its corrupt frames skipped and
counted in /list; reported: the resume time after the server is back, the time to detect a stall with
a per-stream ``read_timeout``, the fps of the good cameras with and without the bad one, and the
damaged packets against the corrupt packets and frames the reader counted.
"""

from __future__ import annotations

import statistics
import time
import urllib.parse
from collections import Counter

import pytest
import requests

from tests.reliability.servers import ServerApp, wait_until
from tests.support.mangle_proxy import MangleProxy
from tests.support.rtsp import RtspServer, RtspUnavailable, ensure_rtsp_packages

SECTION = "Cameras (real RTSP server: gst-rtsp-server, 640x360 at 25 fps)"
READER = dict(backoff_initial=0.2, backoff_max=1.0, open_timeout=2.0)


@pytest.fixture(scope="module", autouse=True)
def rtsp():
    try:
        ensure_rtsp_packages()
    except RtspUnavailable as exc:
        pytest.skip(str(exc))


def start(url: str, camera: str, **query) -> int:
    q = ("?" + urllib.parse.urlencode(query)) if query else ""
    r = requests.post(f"{url}/start/{urllib.parse.quote(camera, safe='')}{q}", timeout=30)
    assert r.status_code == 200, r.text
    return int(r.text.rsplit(" ", 1)[1])


def info(url: str, sid: int) -> dict:
    return next(s for s in requests.get(f"{url}/list", timeout=10).json() if s["id"] == sid)


def running_with_frames(url: str, sid: int, after: int = 0) -> bool:
    i = info(url, sid)
    return i["state"] == "running" and i["frames"] > after


def test_server_killed_and_restarted_and_a_stalled_camera(tmp_path, figures):
    with RtspServer(pattern="ball") as cam, ServerApp.start(tmp_path, "VideoServer", **READER) as app:
        refused = requests.post(f"{app.url}/start/{urllib.parse.quote(cam.url, safe='')}?read_timeout=0", timeout=30)
        assert refused.status_code == 400, refused.text  # the per-stream read_timeout is read (and checked)
        sid = start(app.url, cam.url)
        assert wait_until(lambda: running_with_frames(app.url, sid, 10), 30), info(app.url, sid)
        # the server SIGKILLed, then started again on the same port
        cam.kill()
        seen_down = wait_until(lambda: info(app.url, sid)["state"] == "reconnecting", 30, step=0.02)
        time.sleep(1.0)
        cam.start()
        back, frames = time.monotonic(), info(app.url, sid)["frames"]
        resumed = wait_until(lambda: running_with_frames(app.url, sid, frames), 30, step=0.02)
        resume_s = time.monotonic() - back
        reconnects = info(app.url, sid)["reconnects"]
        # a stall: the socket stays open and nothing comes; this stream's read_timeout is 1 s
        stalled_sid = start(app.url, cam.url, read_timeout=1)
        assert wait_until(lambda: running_with_frames(app.url, stalled_sid, 10), 30)
        cam.pause()
        paused = time.monotonic()
        detected = wait_until(lambda: info(app.url, stalled_sid)["state"] == "reconnecting", 30, step=0.02)
        detect_s = time.monotonic() - paused
        reason = info(app.url, stalled_sid)["reason"]
        cam.resume()
        back, frames = time.monotonic(), info(app.url, stalled_sid)["frames"]
        stall_resumed = wait_until(lambda: running_with_frames(app.url, stalled_sid, frames), 30, step=0.02)
        stall_resume_s = time.monotonic() - back
    figures.add(SECTION, "RTSP server SIGKILLed and started again 1 s later: the stream reconnects and runs",
                1, int(seen_down and resumed), int(not (seen_down and resumed)),
                [f"frames again {resume_s:.2f} s after the server was back (target <= 5 s); reconnects {reconnects}"])
    figures.add(SECTION, "camera stalls (SIGSTOP: socket open, no packets), per-stream read_timeout = 1 s: "
                "detected, reconnected when it sends again", 1, int(detected and stall_resumed),
                int(not (detected and stall_resumed)),
                [f"detected {detect_s:.2f} s after the stall ({reason}); frames again {stall_resume_s:.2f} s after "
                 "it resumed"])
    assert seen_down and resumed and detected and stall_resumed


def fps_of(url: str, sids: list[int], window: float) -> tuple[list[float], list[str]]:
    first = {s["id"]: s for s in requests.get(f"{url}/list", timeout=10).json()}
    t0 = time.monotonic()
    time.sleep(window)
    last = {s["id"]: s for s in requests.get(f"{url}/list", timeout=10).json()}
    took = time.monotonic() - t0
    return ([(last[s]["frames"] - first[s]["frames"]) / took for s in sids],
            [f"{s}: {last[s]['state']}" for s in sids if last[s]["state"] != "running"])


def test_many_cameras_one_bad_the_others_keep_their_fps(tmp_path, sizes, figures):
    n = sizes.cameras
    with RtspServer(pattern="ball", shared=True) as good, RtspServer(pattern="smpte") as bad, \
            ServerApp.start(tmp_path, "VideoServer", read_timeout=1.0, **READER) as app:
        sids = []
        for _ in range(n - 1):  # one after the other (a shared server): each running before the next opens
            sids.append(start(app.url, good.url))
            assert wait_until(lambda: running_with_frames(app.url, sids[-1], 5), 60), \
                (requests.get(f"{app.url}/list", timeout=10).json(), good.log()[-2000:])
        assert wait_until(lambda: all(running_with_frames(app.url, s, 25) for s in sids), 60), \
            (requests.get(f"{app.url}/list", timeout=10).json(), good.log()[-2000:])
        alone, stopped_alone = fps_of(app.url, sids, 4.0)
        bad_sid = start(app.url, bad.url)
        assert wait_until(lambda: running_with_frames(app.url, bad_sid, 5), 30)
        bad.pause()  # stalls: reconnects every read_timeout, forever
        time.sleep(1.5)
        with_bad, stopped_with = fps_of(app.url, sids, 4.0)
        bad_state = info(app.url, bad_sid)
        bad.resume()
    lost = len(stopped_alone) + len(stopped_with)
    figures.add(SECTION, f"{n} cameras, one stalled and reconnecting: the other {n - 1} keep running", n - 1,
                n - 1 - len(stopped_with), lost,
                [f"fps of the {n - 1} good cameras: median {statistics.median(alone):.1f} (min {min(alone):.1f}) "
                 f"alone, {statistics.median(with_bad):.1f} (min {min(with_bad):.1f}) with the stalled one "
                 f"(source 25 fps); the stalled camera: {bad_state['state']}, {bad_state['reconnects']} reconnects, "
                 f"{bad_state['reason']}; not running: {stopped_alone + stopped_with}"])
    assert lost == 0, stopped_alone + stopped_with


def test_corrupt_packets_are_skipped_and_counted_and_the_stream_goes_on(tmp_path, sizes, figures):
    n, every = sizes.corrupt_packets, 20
    with RtspServer(pattern="ball") as cam, MangleProxy(cam.url) as proxy, \
            ServerApp.start(tmp_path, "VideoServer", **READER) as app:
        sid = start(app.url, proxy.url)
        assert wait_until(lambda: running_with_frames(app.url, sid, 25), 30), (info(app.url, sid), cam.log()[-2000:])
        before = info(app.url, sid)
        t0 = time.monotonic()
        proxy.corrupt(every=every)  # one in 20 RTP packets of coded slices gets bytes of its slice data inverted
        states: Counter = Counter()

        def damaged_enough() -> bool:
            states[info(app.url, sid)["state"]] += 1
            return proxy.corrupted >= n

        damaged = wait_until(damaged_enough, 120, step=0.1)
        proxy.corrupt(None)
        during, took = info(app.url, sid), time.monotonic() - t0
        # clean again: the stream keeps running and decoding (the next keyframe repairs the picture)
        after_ok = wait_until(lambda: running_with_frames(app.url, sid, during["frames"] + 25), 30)
        after = info(app.url, sid)
        rtp, corrupted = proxy.rtp_packets, proxy.corrupted
    counted = during["corrupt"] - before["corrupt"]
    kept_running = set(states) == {"running"} and after["state"] == "running"
    ok = damaged and after_ok and kept_running and counted > 0 and during["frames"] > before["frames"] \
        and after["reconnects"] == before["reconnects"]
    figures.add(SECTION, f"camera sends damaged RTP payloads (1 in {every} packets of coded slices, {n} packets, "
                "through a proxy): corrupt frames skipped and counted in /list, the stream keeps running",
                1, int(ok), int(not ok),
                [f"proxy damaged {corrupted} of {rtp} RTP packets; /list counted {counted} corrupt in "
                 f"{took:.1f} s ({before['corrupt']} before, {after['corrupt'] - during['corrupt']} after); "
                 f"{during['frames'] - before['frames']} frames decoded meanwhile "
                 f"({(during['frames'] - before['frames']) / took:.1f} fps, source 25 fps); states seen "
                 f"{dict(states)}; reconnects {before['reconnects']} -> {after['reconnects']}"])
    assert damaged, (corrupted, rtp)
    assert kept_running and after["reconnects"] == before["reconnects"], (dict(states), before, after)
    assert counted > 0 and during["frames"] > before["frames"] and after_ok, (before, during, after)
