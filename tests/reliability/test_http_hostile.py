"""Hand-written hostile clients against real front doors: broken images and forms, heads that are
too big or malformed, clients that hang up mid-body, slow clients (slowloris) that must not block a
normal request, and VideoServer ``/start`` paths that try to leave ``allow_dirs`` (dot segments,
symlinks, FFmpeg protocols that read local files or chain inputs). Each case has one expected
outcome; anything else (a 5xx, no answer, a refused path accepted) is counted as lost."""

from __future__ import annotations

import os
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import requests

from tests.reliability.checks import answers, bytes_answers, image_answers, make_small_clip, photo_bytes
from tests.reliability.rawhttp import SlowClients, exchange, request
from tests.reliability.servers import ServerApp

SECTION = "Hostile clients (hand-written)"


class Tally:
    """Cases of one kind: each either held (the expected answer) or was lost (with a note)."""

    def __init__(self):
        self.tried = self.held = 0
        self.notes: list[str] = []

    def case(self, name: str, ok: bool, detail: str = "") -> None:
        self.tried += 1
        self.held += bool(ok)
        if not ok and len(self.notes) < 8:
            self.notes.append(f"{name}: {detail}"[:300])

    @property
    def lost(self) -> int:
        return self.tried - self.held

    def record(self, figures, what: str):
        return figures.add(SECTION, what, self.tried, self.held, self.lost, self.notes)


def tracebacks(app: ServerApp) -> list[str]:
    return [line for line in app.log_problems() if "Traceback" in line or "Exception in ASGI" in line]


def aftermath(figures, app: ServerApp, server: str, clip=None) -> list[str]:
    """Workers alive, a real request answered, no traceback, clean drain: recorded; returns problems."""
    problems = []
    if not app.workers_alive():
        problems.append("a worker died or was replaced")
    wrong = answers(server, app.url, clip)
    if wrong:
        problems.append(f"real request afterwards: {wrong}")
    problems += [f"log: {line}" for line in tracebacks(app)[:3]]
    code = app.stop()
    if code != 0:
        problems.append(f"exit code {code}: {''.join(app.lines[-5:])}")
    figures.add(SECTION, f"{server}: afterwards workers alive, a real request answered, no traceback, clean drain",
                4, 4 - min(4, len(problems)), min(4, len(problems)), problems)
    return problems


def broken_images() -> dict[str, bytes]:
    jpeg = photo_bytes()
    png = cv2.imencode(".png", cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[:64, :64])[1].tobytes()
    rng = np.random.default_rng(7)
    flipped = bytearray(jpeg)
    for i in rng.integers(600, len(jpeg), 200):
        flipped[i] ^= 0xFF
    cases = {f"JPEG cut at {p}%": jpeg[: len(jpeg) * p // 100] for p in (1, 5, 25, 50, 90, 99)}
    cases.update({
        "JPEG head only": jpeg[:2],
        "JPEG with 200 bytes flipped": bytes(flipped),
        "JPEG with its middle zeroed": jpeg[:1000] + bytes(len(jpeg) - 2000) + jpeg[-1000:],
        "PNG cut in half": png[: len(png) // 2],
        "PNG with a bad CRC": png[:40] + bytes([png[40] ^ 1]) + png[41:],
        "GIF head only": b"GIF89a\x01\x00\x01\x00",
        "BMP head only": b"BM" + bytes(52),
        "random bytes": rng.bytes(5000),
        "text": b"hello, this is not an image",
    })
    return cases


def test_broken_images_and_forms_get_4xx(tmp_path, figures, sizes):
    app = ServerApp.start(tmp_path, "ImageServer", timeout=10, max_body=4_000_000)
    images, forms = Tally(), Tally()
    url = f"{app.url}/analyze/hostile"
    try:
        for _ in range(sizes.hostile_rounds):
            for name, body in broken_images().items():
                for how in ("raw", "multipart"):
                    kw = ({"data": body, "headers": {"Content-Type": "image/jpeg"}} if how == "raw"
                          else {"files": {"file": ("a.jpg", body, "image/jpeg")}})
                    r = requests.post(url, timeout=60, **kw)
                    # a decoder may recover part of a damaged picture: then a JPEG comes back
                    ok = r.status_code == 400 or (r.status_code == 200 and r.headers["content-type"] == "image/jpeg")
                    images.case(f"{name} ({how})", ok, f"{r.status_code} {r.text[:100]}")
            form_cases = {
                "multipart without a file": {"files": {"note": (None, "just text")}},
                "multipart with an empty file": {"files": {"file": ("a.jpg", b"", "image/jpeg")}},
                "multipart, 2,000 text fields": {"data": {f"k{i}": "v" for i in range(2000)},
                                                 "files": {"file": ("a.jpg", photo_bytes())}},
                "multipart, 2,000 files": {"files": {f"f{i}": ("a", b"x") for i in range(2000)}},
                "multipart without boundary": {"data": b"xx", "headers": {"Content-Type": "multipart/form-data"}},
                "multipart, boundary never closed": {
                    "data": b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc',
                    "headers": {"Content-Type": "multipart/form-data; boundary=zz"}},
                "multipart, a 3 MB text field": {
                    "data": b'--zz\r\nContent-Disposition: form-data; name="t"\r\n\r\n' + b"a" * 3_000_000
                            + b"\r\n--zz--\r\n",
                    "headers": {"Content-Type": "multipart/form-data; boundary=zz"}},
                "empty body": {"data": b""},
                "JSON body": {"json": {"data": [1, 2, 3]}},
            }
            for name, kw in form_cases.items():
                r = requests.post(url, timeout=60, **kw)
                forms.case(name, 400 <= r.status_code < 500, f"{r.status_code} {r.text[:100]}")
        images.record(figures, f"ImageServer: {len(broken_images())} truncated or corrupt images, raw and as a "
                               "multipart file: 400 (or the picture a decoder recovered)")
        forms.record(figures, "ImageServer: multipart without a file, empty, too many fields, broken; "
                              "empty and JSON bodies: 4xx")
    finally:
        problems = aftermath(figures, app, "ImageServer")
    assert images.lost == 0, images.notes
    assert forms.lost == 0, forms.notes
    assert not problems, problems


def test_oversized_and_malformed_heads_and_hang_ups(tmp_path, figures, sizes):
    app = ServerApp.start(tmp_path, "BytesServer", timeout=10, max_body=4_000_000)
    heads, hangups, normal = Tally(), Tally(), Tally()
    try:
        big = {f"a {n:,}-byte header": request("POST", "/analyze/x", b"ab", {"X-Big": "a" * n})
               for n in (100_000, 1_000_000, 8_000_000)}
        big["20,000 headers"] = request("POST", "/analyze/x", b"ab", {f"X-{i}": "y" for i in range(20_000)})
        big["a 1 MB request target"] = request("POST", "/analyze/" + "a" * 1_000_000, b"ab")
        malformed = {
            "negative Content-Length": b"POST /analyze/x HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nab",
            "Content-Length of 10**22": b"POST /analyze/x HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"9" * 22
                                        + b"\r\n\r\nab",
            "Content-Length and chunked": b"POST /analyze/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "two Content-Lengths": b"POST /analyze/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                                   b"Content-Length: 5\r\n\r\nab",
            "bad chunk size": b"POST /analyze/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n",
            "binary garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
            "header without colon": b"POST /analyze/x HTTP/1.1\r\nHost: a\r\nNoColonHere\r\n\r\n",
            "NUL in the target": b"POST /analyze/a\x00b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab",
            "HTTP/9.9": b"POST /analyze/x HTTP/9.9\r\nHost: a\r\nContent-Length: 2\r\n\r\nab",
        }
        for _ in range(sizes.hostile_rounds):
            for name, data in {**big, **malformed}.items():
                status, reply = exchange(app.port, data)
                # refused with a 4xx, or the connection closed without an answer: both leave the server whole
                heads.case(name, status is None or 400 <= status < 500, f"{status} {reply[:120]!r}")
            for n in (1_000, 8_000, 32_000):  # under the limit: served as any other request
                status, reply = exchange(app.port, request("POST", "/analyze/x", b"abc", {"X-Big": "a" * n}))
                normal.case(f"a {n:,}-byte header", status == 200 and reply.endswith(b"cba"),
                            f"{status} {reply[:120]!r}")
            cut = {
                "body cut after 10 of 100,000 bytes": request("POST", "/analyze/x", b"a" * 100_000)[:-99_990],
                "chunked body cut mid-chunk": b"POST /analyze/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                              b"\r\n\r\nffff\r\nabc",
                "multipart cut mid-part": request("POST", "/analyze/x", b'--zz\r\nContent-Disposition: form-data; '
                                                  b'name="file"; filename="a"\r\n\r\n' + b"a" * 50_000,
                                                  {"Content-Type": "multipart/form-data; boundary=zz"})[:-40_000],
                "head cut mid-line": b"POST /analyze/x HTTP/1.1\r\nHost: a\r\nContent-Le",
            }
            for name, data in cut.items():
                exchange(app.port, data, close_after_send=True)
                hangups.case(name, app.workers_alive(), "a worker died")
        # the server has seen every hang-up once a later request on a new connection is answered
        ok = bytes_answers(app.url)
        hangups.case("a request after the hang-ups", ok is None, str(ok))
        new_tracebacks = tracebacks(app)
        hangups.case("no traceback in the log for the hang-ups", not new_tracebacks, " / ".join(new_tracebacks[:2]))
        heads.record(figures, "BytesServer: oversized heads (100 kB to 8 MB header, 20,000 headers, 1 MB target) "
                              "and malformed ones (lengths, chunking, garbage): a 4xx or the connection closed")
        normal.record(figures, "BytesServer: requests with a 1 kB to 32 kB header (under the limit): answered")
        hangups.record(figures, "BytesServer: clients hanging up mid-head and mid-body (raw, chunked, multipart)")
    finally:
        problems = aftermath(figures, app, "BytesServer")
    assert heads.lost == 0, heads.notes
    assert hangups.lost == 0, hangups.notes
    assert normal.lost == 0, normal.notes
    assert not problems, problems


def test_slow_clients_do_not_block_a_normal_request(tmp_path, figures, sizes):
    app = ServerApp.start(tmp_path, "ImageServer", timeout=10, max_body=4_000_000)
    tally = Tally()
    slow = []
    half = max(1, sizes.slow_clients // 2)
    try:
        slow = [SlowClients(app.port, half), SlowClients(app.port, half, body=True)]
        for clients in slow:
            clients.wait_sent(half * 20)  # every slow client is well into its head or body
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: image_answers(app.url), range(4 * sizes.hostile_rounds)))
        for i, wrong in enumerate(results):
            tally.case(f"normal request {i} while {2 * half} slow clients trickle", wrong is None, str(wrong))
        tally.notes.append(f"the server cut {slow[0].cut} of the slow heads and {slow[1].cut} of the slow bodies "
                           "(allowed: a server may time slow clients out)")
        tally.record(figures, f"ImageServer: {half} slowloris connections sending a head and {half} sending a "
                              f"body byte by byte; normal requests answered correctly meanwhile")
    finally:
        for clients in slow:
            clients.close()
        problems = aftermath(figures, app, "ImageServer")
    assert tally.lost == 0, tally.notes
    assert not problems, problems


def path_tricks(clips, outside_clip, cwd) -> dict[str, str]:
    """Raw request targets for ``POST /start/...`` that must be refused: each would open a file
    outside ``clips`` (the only allowed directory) or go through an FFmpeg protocol."""
    q = lambda s: urllib.parse.quote(str(s), safe="")  # noqa: E731
    out = str(outside_clip)
    inside = str(clips / "cat.mp4")
    rel = os.path.relpath(outside_clip, clips)
    return {
        "dot segments, raw": f"/start/{clips}/../{rel}",
        "dot segments, raw, from the root": "/start/../../../../../../etc/passwd",
        "dot segments, encoded": f"/start/{q(str(clips) + '/../' + rel)}",
        "dot segments, %2e%2e": "/start/" + q(str(clips)) + "%2F%2e%2e%2F" + q(rel),
        "dot segments, double-encoded": "/start/" + q(q(f"{clips}/../{rel}")),
        "absolute path outside": f"/start/{q(out)}",
        "relative path from the server's directory": f"/start/{q(os.path.relpath(outside_clip, cwd))}",
        "symlink to a file outside": f"/start/{q(clips / 'link.mp4')}",
        "symlink to a directory outside": f"/start/{q(clips / 'linkdir' / outside_clip.name)}",
        "file: protocol": f"/start/{q('file:' + out)}",
        "file: protocol on an allowed file": f"/start/{q('file:' + inside)}",
        "concat: allowed + outside": f"/start/{q(f'concat:{inside}|{out}')}",
        "subfile,,": f"/start/{q(f'subfile,,start,0,end,0,,:{out}')}",
        "data:": f"/start/{q('data:video/mp4;base64,AAAAIGZ0eXBpc29t')}",
        "crypto:": f"/start/{q('crypto:' + out)}",
        "async:file:": f"/start/{q('async:file:' + out)}",
        "cache:": f"/start/{q('cache:' + out)}",
        "pipe:": f"/start/{q('pipe:0')}",
        "fd:": f"/start/{q('fd:0')}",
        "hls+file:": f"/start/{q('hls+file:' + out)}",
        "tcp://": f"/start/{q('tcp://127.0.0.1:1')}",
        "unix:": f"/start/{q('unix:/tmp/x.sock')}",
        "ftp://": f"/start/{q('ftp://127.0.0.1:1/x.mp4')}",
        "FILE: in capitals": f"/start/{q('FILE:' + out)}",
        "NUL byte": f"/start/{q(inside)}%00.txt",
        "NUL byte alone": "/start/%00",
        "a 10 kB file name": f"/start/{q(str(clips) + '/' + 'a' * 10_000)}",
        "a symlink loop": f"/start/{q(clips / 'loop.mp4')}",
        # a file whose name is a protocol prefix: the check sees a file inside, FFmpeg would read
        # the protocol's target outside unless the file is opened by its resolved path
        "a file named like concat:outside": f"/start/{q(f'concat:{out}')}",
        "invalid UTF-8": "/start/%ff%fe%fd",
        "a newline in the path": f"/start/{q(inside + chr(10) + 'x')}",
    }


def test_video_start_refuses_paths_outside_allow_dirs(tmp_path, figures, sizes):
    clips, outside, cwd = tmp_path / "clips", tmp_path / "outside", tmp_path / "cwd"
    for d in (clips, outside, cwd):
        d.mkdir()
    clip = make_small_clip(clips)
    outside_clip = make_small_clip(outside)
    (clips / "link.mp4").symlink_to(outside_clip)
    (clips / "linkdir").symlink_to(outside)
    (clips / "loop.mp4").symlink_to(clips / "loop.mp4")
    deputy = cwd / f"concat:{outside_clip}"  # relative to the server's directory, inside allow_dirs
    deputy.parent.mkdir(parents=True)
    deputy.write_bytes(b"not a video")
    broken = {"empty.mp4": b"", "half.mp4": clip.read_bytes()[: clip.stat().st_size // 2],
              "noise.mp4": np.random.default_rng(3).bytes(20_000), "text.mp4": b"not a video\n" * 100}
    for name, data in broken.items():
        (clips / name).write_bytes(data)
    app = ServerApp.start(tmp_path, "VideoServer", cwd=cwd, timeout=10, allow_dirs=[str(clips), str(cwd)])
    tricks, files = Tally(), Tally()
    try:
        for _ in range(sizes.hostile_rounds):
            for name, target in path_tricks(clips, outside_clip, cwd).items():
                status, reply = exchange(app.port, request("POST", target))
                tricks.case(name, status is not None and 400 <= status < 500, f"{status} {reply[-200:]!r}")
            for name in broken:
                r = requests.post(f"{app.url}/start/{urllib.parse.quote(str(clips / name), safe='')}", timeout=60)
                files.case(name, r.status_code in (200, 400), f"{r.status_code} {r.text[:120]}")
        started = requests.get(f"{app.url}/list", timeout=30).json()
        outside_read = [s for s in started if str(outside) in s["url"] or "link" in s["url"]
                        or (s["frames"] and not s["url"].startswith(str(clips)))]
        tricks.case("no stream decoded a file outside allow_dirs", not outside_read, str(outside_read[:2]))
        tricks.record(figures, f"VideoServer /start: {len(path_tricks(clips, outside_clip, cwd))} path tricks "
                               "(dot segments raw and encoded, symlinks out and in a loop, file: concat: subfile,, "
                               "data: crypto: async:file: ..., NUL, a 10 kB name, a file named like a protocol): "
                               "refused with a 4xx")
        files.record(figures, "VideoServer /start on broken files inside allow_dirs (empty, cut in half, noise, "
                              "text): 400 or a stream that ends")
    finally:
        problems = aftermath(figures, app, "VideoServer", clip)
    assert tricks.lost == 0, "\n".join(tricks.notes)
    assert files.lost == 0, files.notes
    assert not problems, problems
