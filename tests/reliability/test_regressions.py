"""Regression tests for faults the reliability suite found, one per fault, each against the module
where the fault was fixed."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest

from megflow_mp.frontdoor import bind


def test_front_door_connections_have_nagle_off():
    """bind() made a socket with proto 0, so asyncio left Nagle on for accepted connections and
    every request after the first on a keep-alive connection waited for a delayed ACK."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen = []

    async def main():
        def accepted(reader, writer):
            s = writer.get_extra_info("socket")
            seen.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.read()  # the server closes after looking at its side
            writer.close()

    asyncio.run(main())
    assert seen and seen[0] != 0


def video_server(allow_dirs):
    from megflow_mp.nodes.video_server import VideoServer

    return VideoServer("video", {"port": 0, "allow_dirs": [str(d) for d in allow_dirs]})  # no port taken yet


def test_video_server_refuses_unusable_paths_instead_of_failing(tmp_path):
    """A NUL byte, a name longer than the file system takes and a symlink loop made check_url raise
    (ValueError, OSError, RuntimeError): the request was answered 500."""
    (tmp_path / "loop.mp4").symlink_to(tmp_path / "loop.mp4")
    server = video_server([tmp_path])
    for url in (f"{tmp_path}/a\x00b.mp4", "\x00", f"{tmp_path}/{'a' * 10_000}", f"{tmp_path}/loop.mp4"):
        reason = server.check_url(url)
        assert reason, url


def test_video_server_opens_a_file_by_its_resolved_path(tmp_path):
    """A file under allow_dirs whose name starts like an FFmpeg protocol (``concat:/elsewhere/x.mp4``,
    relative to the working directory) passed the check and was opened by its name, so FFmpeg read
    ``/elsewhere/x.mp4``, outside allow_dirs."""
    outside = tmp_path / "outside" / "x.mp4"
    deputy = tmp_path / f"concat:{outside}"
    deputy.parent.mkdir(parents=True)
    deputy.write_bytes(b"not a video")
    server = video_server([tmp_path])
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        url = f"concat:{outside}"
        assert server.check_url(url) is None  # a real file inside allow_dirs
        assert server.open_target(url) == str(deputy.resolve())  # opened as that file, no protocol
        assert server.open_target("rtsp://127.0.0.1:8554/cam") == "rtsp://127.0.0.1:8554/cam"
    finally:
        os.chdir(cwd)


def test_read_body_answers_a_client_that_hung_up_mid_body():
    """The client closing the connection mid-body raised ClientDisconnect out of the route: uvicorn
    logged 'Exception in ASGI application' with a traceback for every such client."""
    from starlette.requests import Request

    from megflow_mp.nodes.http_routes import read_body

    messages = [{"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.disconnect"}]

    async def receive():
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/analyze/x", "headers": [(b"content-length", b"100")],
             "query_string": b""}
    reply = asyncio.run(read_body(Request(scope, receive), 1000))
    assert reply.status_code == 400


def test_graphs_that_contain_each_other_are_refused():
    """g -> h -> g passed check ('0 worker processes') and run died with RecursionError: only a
    graph naming itself directly was caught."""
    from megflow_mp.config import load_config_string
    from megflow_mp.errors import ConfigError
    from megflow_mp.graph import build_app
    from megflow_mp.registry import builtin_registry

    text = """
main = "g"
[[graphs]]
name = "g"
nodes = [{ name = "a", ty = "NoopProducer" }, { name = "b", ty = "h" }]
[[graphs]]
name = "h"
nodes = [{ name = "c", ty = "k|g" }]
[[graphs]]
name = "k"
nodes = [{ name = "d", ty = "NoopConsumer" }]
"""
    with pytest.raises(ConfigError) as err:
        build_app(load_config_string(text, "app.toml"), builtin_registry(), "app.toml")
    assert str(err.value) == "app.toml: graphs[0].nodes[1].ty: graph 'g' contains itself: g -> h -> g"


def test_a_config_that_is_not_utf8_is_refused_at_its_line(tmp_path):
    """The error gave the codec's byte position ('can't decode byte 0xff in position 414'), not
    where in the file the bad byte is."""
    from megflow_mp.config import load_config
    from megflow_mp.errors import ConfigError

    path = tmp_path / "app.toml"
    path.write_bytes(b'main = "g"\n[[graphs]]\nname = "g\xff"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: cannot read config file: not UTF-8 at line 3, column 10 (byte 0xff)"


def test_an_endless_include_is_refused_instead_of_read_forever(tmp_path):
    """include = ["/dev/zero"] made the loader read until memory ran out."""
    from megflow_mp.config import load_config
    from megflow_mp.errors import ConfigError

    path = tmp_path / "app.toml"
    path.write_text('main = "g"\ninclude = ["/dev/zero"]\n[[graphs]]\nname = "g"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.path == "include[0]" and "larger than 16 MiB" in err.value.message


def test_a_huge_cloned_is_refused_before_anything_is_planned():
    """cloned = 1000000000 passed validation and check built a list of a billion processes
    (MemoryError, or the machine swapping)."""
    from megflow_mp.config import load_config_string
    from megflow_mp.errors import ConfigError

    text = 'main = "g"\n[[graphs]]\nname = "g"\nnodes = [{ name = "a", ty = "NoopProducer", cloned = 1000000000 }]\n'
    with pytest.raises(ConfigError) as err:
        load_config_string(text, "app.toml")
    assert str(err.value) == "app.toml: graphs[0].nodes[0].cloned: expected an integer <= 1024, got 1000000000"


def test_an_odd_key_is_quoted_in_the_error_path():
    """An unknown key with a tab or U+0085 (a line break to str.splitlines) was printed raw in the
    TOML path, so the one error line became several."""
    from megflow_mp.config import load_config_string
    from megflow_mp.errors import ConfigError

    text = ('main = "g"\n[[graphs]]\nname = "g"\n'
            'connections = [{ cap = 1, ports = ["a:b", "c:d"], "x\\ty\\u0085" = 1 }]\n')
    with pytest.raises(ConfigError) as err:
        load_config_string(text, "app.toml")
    assert err.value.path == 'graphs[0].connections[0]."x\\u0009y\\u0085"'
    assert len(str(err.value).splitlines()) == 1


def test_a_toml_error_at_the_end_of_the_file_names_its_line():
    """tomllib says '(at end of document)' for a file cut inside a string: the error named no line."""
    from megflow_mp.config import load_config_string
    from megflow_mp.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config_string('main = "g"\n[[graphs]]\nname = """g', "app.toml")
    assert "TOML syntax error at line 3, column 12 (the end of the file): Unterminated string" in str(err.value)


@pytest.mark.parametrize("where,name,reason", [
    ("graphs[0].nodes[0].name", "a\x0bb", "cannot contain whitespace or control characters ('\\x0b')"),
    ("graphs[0].nodes[0].name", "a:b", "cannot contain ':': it is written in ports as 'node:port'"),
    ("graphs[0].nodes[0].name", "", "a name cannot be empty"),
])
def test_a_node_name_that_no_port_can_name_is_refused_at_the_name(where, name, reason):
    """A node named with a control character was accepted; the error came later, at a port, and
    listed the raw name among 'nodes here', splitting the one error line."""
    from megflow_mp.config import load_config_string
    from megflow_mp.errors import ConfigError

    text = ('main = "g"\n[[graphs]]\nname = "g"\n'
            f'nodes = [{{ name = {json.dumps(name)}, ty = "NoopProducer" }}]\n')
    with pytest.raises(ConfigError) as err:
        load_config_string(text, "app.toml")
    assert err.value.path == where and reason in err.value.message
    assert len(str(err.value).splitlines()) == 1


def test_a_graph_name_with_a_bar_is_refused():
    from megflow_mp.config import load_config_string
    from megflow_mp.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config_string('main = "a|b"\n[[graphs]]\nname = "a|b"\n', "app.toml")
    assert err.value.path == "graphs[0].name" and "graph types are written 'A|B'" in err.value.message


@pytest.mark.parametrize("host,port", [("127.0.0.1", -1), ("127.0.0.1", 70000), ("127.0.0.1\x00", 0)])
def test_a_server_address_out_of_range_is_a_clear_error(host, port):
    """port = -1 passes check (nodes are not built there) and run failed with a traceback of
    OverflowError from socket.bind in the node's constructor."""
    from megflow_mp.frontdoor import FrontDoorError

    with pytest.raises(FrontDoorError, match="cannot listen on"):
        bind(host, port)


def test_a_template_that_means_two_things_names_the_line_where_they_differ():
    """Variables that render to two different documents in templar and jinja2 were refused with no
    line: the user had to find the ambiguous expression in the whole file."""
    from megflow_mp.config import load_config_string
    from megflow_mp.errors import ConfigError

    text = 'main = "g"\n[[graphs]]\nname = "g"\n[[graphs.nodes]]\nname = "n"\nty = "T"\nsize = {{ 1 + 2 * 3 }}\n'
    with pytest.raises(ConfigError) as err:
        load_config_string(text, "app.toml", variables={})
    assert "(the renderings first differ at line 7)" in str(err.value)


def test_video_start_with_a_newline_in_the_path_is_refused_not_404(tmp_path):
    """starlette's path convertor stops at a newline, so /start/a%0Ab matched no route: 404, a
    status /start does not document (schemathesis: 'Undocumented HTTP status code')."""
    server = video_server([tmp_path])
    status, body = asyncio.run(asgi_request(server.build_app(), "POST", "/start/a\nb"))  # as uvicorn decodes it
    assert status == 400 and json.loads(body)["detail"].startswith("refused")


async def asgi_request(app, method: str, path: str) -> tuple[int, bytes]:
    """One request straight into an ASGI app (the front door's app without its server)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "root_path": "", "scheme": "http", "query_string": b"", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_video_list_answers_while_streams_start_on_other_threads(tmp_path):
    """GET /list and /view iterated the streams dict while /start (on another thread) added to it:
    500 'dictionary changed size during iteration' under concurrent starts."""
    import threading
    import urllib.parse

    import requests

    from tests.reliability.servers import ServerApp
    from tests.support.clips import make_clip

    clips = tmp_path / "clips"
    clip = urllib.parse.quote(str(make_clip(clips / "short.mp4", frames=5, size=(160, 96))), safe="")
    bad, done = [], threading.Event()
    with ServerApp.start(tmp_path, "VideoServer", allow_dirs=[str(clips)], history=4) as app:
        def start():
            with requests.Session() as s:
                for _ in range(40):
                    s.post(f"{app.url}/start/{clip}", timeout=30)

        def look():
            with requests.Session() as s:
                while not done.is_set():
                    for path in ("/list", "/view"):
                        r = s.get(f"{app.url}{path}", timeout=30)
                        if r.status_code != 200:
                            bad.append((path, r.status_code))

        starters = [threading.Thread(target=start) for _ in range(6)]
        lookers = [threading.Thread(target=look) for _ in range(3)]
        for t in starters + lookers:
            t.start()
        for t in starters:
            t.join()
        done.set()
        for t in lookers:
            t.join()
    assert not bad, bad[:5]


def _ended_stream(tmp_path):
    """A real Stream of a 3-frame clip run to its end in an in-process worker (tests/unit/test_stream.py's
    set-up: the test plays the host of the instance's node, which sends two results back and ends)."""
    from megflow_mp.plan import MAIN
    from megflow_mp.registry import builtin_registry
    from megflow_mp.video.source import ReaderOptions
    from megflow_mp.video.stream import Stream
    from tests.support.clips import make_clip
    from tests.support.inproc import InProc
    from tests.unit.test_stream import APP, Host

    clip = str(make_clip(tmp_path / "c.mp4", frames=3, size=(160, 96)))
    w = InProc(APP, "g/v", builtin_registry())
    assert w.install_static() == [None]
    host = Host(w, results=["a", "b"])
    node = w.nodes(MAIN)["g/v"]
    stream = Stream(0, clip, ReaderOptions(), w.worker, node, node.spec.dynamic["out"], "out")
    host.stream = stream
    stream.open()
    w.run(lambda: stream.attach("g/s"))
    exit_chan = stream.child.exits["out"].chan
    w.run_until(lambda: stream.done.done, timeout=30)
    host.stream = None
    return w, stream, exit_chan


def test_an_ended_streams_results_inbox_leaves_the_worker(tmp_path):
    """The inbox that brings a stream's results back stayed in its worker's channel table for good
    whenever results were still queued when the instance finished (most streams): about 1 kB per
    stream started, for the life of a VideoServer."""
    w, stream, exit_chan = _ended_stream(tmp_path)
    try:
        assert stream.take_messages() == ["a", "b"]  # the results were read after the instance finished
        assert exit_chan not in w.worker.channels.inboxes and not w.worker.channels.retiring
    finally:
        w.close()


def test_an_ended_stream_is_freed_without_the_cycle_collector(tmp_path):
    """A stream resolved its ``done`` future with itself: stream -> future -> stream, a cycle that only
    the cyclic collector frees, and a worker runs it rarely (young collections every 20,000
    allocations), so every ended stream, with its messages and live channel, waited for a full one."""
    import gc
    import weakref

    w, stream, _ = _ended_stream(tmp_path)
    try:
        ref = weakref.ref(stream)
        gc.disable()
        try:
            del stream
            assert ref() is None
        finally:
            gc.enable()
    finally:
        w.close()


def test_metrics_keep_only_the_numbers_of_an_ended_stream(tmp_path):
    """The metrics sampler held every stream it had seen (the Stream object, with its messages, live
    channel and futures) for the whole retention (60 s): a VideoServer starting streams quickly kept
    all of them. It now keeps the last values of an ended stream, still exported until retention."""
    import weakref

    from megflow_mp.observe import snapshot
    from megflow_mp.observe.sampler import Sampler

    w, stream, _ = _ended_stream(tmp_path)
    try:
        sampler = Sampler(w.worker, tmp_path, interval=1.0, retention=60.0)
        sampler.add_stream(stream)
        out = snapshot.Builder({})
        sampler._streams(out)
        ref = weakref.ref(stream)
        del stream
        assert ref() is None  # only its numbers are kept
        out = snapshot.Builder({})
        sampler._streams(out)
        frames = [v for name, labels, v in out.series if name == "megflow_stream_frames_decoded"]
        assert frames == [3]  # and still exported
    finally:
        w.close()
