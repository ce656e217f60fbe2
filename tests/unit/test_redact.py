"""Secrets in video source URLs: what redact_url shows and what scrub hides in free text."""

from __future__ import annotations

import av
import pytest

from megflow_mp.errors import ReaderError
from megflow_mp.video.reader import StreamReader, describe
from megflow_mp.video.redact import MASK, is_secret_name, redact_url, scrub, secrets_of
from megflow_mp.video.source import ReaderOptions


@pytest.mark.parametrize("url,shown", [
    # user info, with and without a password, is hidden as a whole
    ("rtsp://admin:S3cret@192.0.2.10:554/stream1", "rtsp://***@192.0.2.10:554/stream1"),
    ("rtsp://admin@192.0.2.10/stream1", "rtsp://***@192.0.2.10/stream1"),
    ("rtsp://:S3cret@cam/s", "rtsp://***@cam/s"),
    ("rtsps://admin:p%40ss%3Aw%2Fd@cam.example.com/live", "rtsps://***@cam.example.com/live"),
    ("rtsp://admin:p@ss@cam/s", "rtsp://***@cam/s"),  # an '@' left unencoded: the last one ends the user info
    # query secrets, by name, any case, also inside a name; the other parameters as given
    ("http://cam/v.mjpg?token=S3cretT0ken&channel=1", "http://cam/v.mjpg?token=***&channel=1"),
    ("https://cam/x?API_KEY=k1;Signature=s2&X-Auth=a3&access_token=t4&pwd=p5&passwd=p6&password=p7&secret=s8",
     "https://cam/x?API_KEY=***;Signature=***&X-Auth=***&access_token=***&pwd=***&passwd=***&password=***"
     "&secret=***"),
    ("http://cam/x?channel=1&subtype=0", "http://cam/x?channel=1&subtype=0"),
    ("http://cam/x?token=&a=b", "http://cam/x?token=&a=b"),  # nothing to hide
    ("http://cam/x?%74oken=abc", "http://cam/x?%74oken=***"),  # a percent-encoded name
    # fragments, and cameras that take credentials in the path
    ("http://cam/x#access_token=abc&v=2", "http://cam/x#access_token=***&v=2"),
    ("http://u:pw9@cam/x?token=tk7#secret=sc8", "http://***@cam/x?token=***#secret=***"),
    ("rtsp://cam:554/user=admin&password=123&channel=1&stream=0.sdp?",
     "rtsp://cam:554/user=admin&password=***&channel=1&stream=0.sdp?"),
    # IPv6 hosts
    ("rtsp://admin:S3cret@[fd00::12]:554/s", "rtsp://***@[fd00::12]:554/s"),
    ("rtsp://[::1]:8554/test?token=x", "rtsp://[::1]:8554/test?token=***"),
    # no secret: unchanged, byte for byte
    ("rtsp://127.0.0.1:8554/test", "rtsp://127.0.0.1:8554/test"),
    ("HTTP://Cam/A%20B?x=1", "HTTP://Cam/A%20B?x=1"),
    # file paths, even odd ones, are not URLs
    ("/data/clips/a:b@c.mp4", "/data/clips/a:b@c.mp4"),
    ("clips/cat.mp4", "clips/cat.mp4"),
    ("/data/x.mp4?token=1", "/data/x.mp4?token=1"),
    ("", ""),
    # URLs that do not parse: still redacted by the same rules
    ("rtsp://admin:S3cret@[::1/s", "rtsp://***@[::1/s"),
    ("rtsp:/admin:S3cret@cam/s", "rtsp:/***@cam/s"),
    ("rtsp:admin:S3cret@cam/s", "rtsp:***@cam/s"),
    ("rtsp://admin:S3cret@cam:notaport/s", "rtsp://***@cam:notaport/s"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    for secret in secrets_of(url):
        assert secret not in shown.replace(MASK, "")


@pytest.mark.parametrize("name,secret", [("password", True), ("PassWord", True), ("api_key", True), ("apikey", True),
                                         ("access_token", True), ("X-Amz-Signature", True), ("auth", True),
                                         ("channel", False), ("subtype", False), ("user", False), ("", False)])
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


def test_redact_url_never_raises_on_what_is_not_a_string():
    assert redact_url(None) is None
    assert scrub(None, "rtsp://a:b@c/d") is None
    assert scrub("text", None) == "text"


def test_secrets_of_gives_every_form_longest_first():
    assert secrets_of("rtsp://admin:p%40ss@cam/s") == ["admin%3Ap%40ss", "admin:p%40ss", "admin:p@ss", "p%40ss",
                                                        "p@ss"]
    assert secrets_of("rtsp://tok3n@cam/s") == ["tok3n"]  # a lone user info is the secret
    assert secrets_of("rtsp://127.0.0.1/s") == []


@pytest.mark.parametrize("text,url,want", [
    ("[Errno 111] Connection refused: 'rtsp://admin:S3cret@127.0.0.1:1/test'", "rtsp://admin:S3cret@127.0.0.1:1/test",
     "[Errno 111] Connection refused: 'rtsp://***@127.0.0.1:1/test'"),
    # FFmpeg may print parts of it, or the URL decoded
    ("401 Unauthorized (password S3cret rejected)", "rtsp://admin:S3cret@cam/s",
     "401 Unauthorized (password *** rejected)"),
    ("DESCRIBE rtsp://admin:p@ss@cam/s failed", "rtsp://admin:p%40ss@cam/s", "DESCRIBE rtsp://***@cam/s failed"),
    ("GET /x?token=S3cretT0ken 403", "http://cam/x?token=S3cretT0ken", "GET /x?token=*** 403"),
    ("no secret here", "rtsp://127.0.0.1/s", "no secret here"),
    ("file /data/a.mp4: invalid data", "/data/a.mp4", "file /data/a.mp4: invalid data"),
])
def test_scrub(text, url, want):
    assert scrub(text, url) == want


def test_reader_reasons_and_errors_show_no_secret(tmp_path):
    url = "rtsp://admin:S3cretPassw0rd@127.0.0.1:1/test?token=S3cretT0ken"
    err = av.error.ConnectionRefusedError(111, "Connection refused", url)
    assert describe(err, url) == "connection refused: rtsp://***@127.0.0.1:1/test?token=***"
    other = OSError(5, f"I/O error on {url}")
    other.strerror = f"I/O error on {url}"
    assert "S3cret" not in describe(other, url)
    assert "S3cret" not in describe(ValueError(f"bad {url}"), url)
    assert describe(ReaderError(url, f"no video stream: {url}"), url) == (
        "no video stream: rtsp://***@127.0.0.1:1/test?token=***")
    reader = StreamReader(url, ReaderOptions())
    assert reader.shown_url == "rtsp://***@127.0.0.1:1/test?token=***"


def test_a_live_reader_that_cannot_connect_reports_no_secret():
    url = "rtsp://admin:S3cretPassw0rd@127.0.0.1:1/test"
    seen = []
    reader = StreamReader(url, ReaderOptions(open_timeout=1, read_timeout=1, backoff_initial=0.05, max_reconnects=1),
                          on_state=lambda state, detail: seen.append((state, detail)))
    reader.start()
    while reader.get(timeout=10) is not None:
        pass
    reader.stop()
    assert seen[-1][0] == "error" and "rtsp://***@127.0.0.1:1/test" in seen[-1][1]
    assert not any("S3cret" in str(detail) for _, detail in seen)
    assert "S3cret" not in reader.error


def test_a_stream_on_another_replica_is_shown_redacted():
    from megflow_mp.video.runners import RemoteStream, blank_info

    url = "rtsp://admin:S3cretPassw0rd@127.0.0.1:8554/test?token=S3cretT0ken"
    remote = RemoteStream("gate", url, ReaderOptions(), "restart", proc=2)
    assert remote.url == url  # started again elsewhere with the real one
    assert remote.shown_url == blank_info(remote, "starting", None)["url"] == "rtsp://***@127.0.0.1:8554/test?token=***"
