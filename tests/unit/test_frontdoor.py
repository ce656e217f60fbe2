"""FrontDoor: HTTP requests into the graph and results back, matched by ``partial_id``.

A real uvicorn server on a free port serves a tiny Starlette app whose route awaits
``door.request``; the graph is a hub task (``send``) answering on the test's hub. Clients run on
threads; the hub runs on the test's thread until they have their answers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from megflow_mp import Envelope
from megflow_mp.errors import FrontDoorError, NodeFailure, RequestFailed
from megflow_mp.frontdoor import FrontDoor
from megflow_mp.runtime.hub import Hub


def app_for(door: FrontDoor) -> Starlette:
    async def ask(request):
        try:
            envelope = await door.request(request.path_params["word"], extra_data="x")
        except RequestFailed as exc:
            return JSONResponse({"failed": str(exc)}, status_code=500)
        except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
            return JSONResponse({"timeout": True}, status_code=504)
        return JSONResponse({"echo": envelope.msg, "partial_id": envelope.partial_id})

    return Starlette(routes=[Route("/ask/{word}", ask)])


@pytest.fixture
def hub():
    h = Hub()
    yield h
    h.close()


def get(port: int, word: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ask/{word}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def serve(hub, door, graph, words) -> list:
    """Start ``door`` with ``graph`` as its send, ask each word from a thread, return the answers."""
    door.start(app_for(door), hub, graph)
    answers = [None] * len(words)

    def client(i, word):
        answers[i] = get(door.port, word)
        hub.call_soon_threadsafe(lambda: None)  # wake the hub to look at the answers

    threads = [threading.Thread(target=client, args=(i, w)) for i, w in enumerate(words)]
    for t in threads:
        t.start()
    try:
        assert hub.run_until(lambda: all(a is not None for a in answers), timeout=20)
    finally:
        for t in threads:
            t.join(10)
        door.close()
    return answers


def test_results_come_back_to_the_request_that_sent_them(hub):
    door = FrontDoor("t", port=0, timeout=10)
    held = []

    def graph(envelope):  # holds the first request until the second came, then answers in reverse
        held.append(envelope)
        if len(held) == 2:
            for e in reversed(held):
                door.deliver(e.repack(e.msg.upper()))

    answers = serve(hub, door, graph, ["ab", "cd"])
    assert sorted(a[1]["echo"] for a in answers) == ["AB", "CD"]
    assert [a[1]["echo"] for a in answers] == ["AB", "CD"]  # each request got its own result
    assert all(a[0] == 200 for a in answers) and door.inflight() == 0


def test_a_request_a_node_failed_raises_request_failed(hub):
    door = FrontDoor("t", port=0, timeout=10)

    def graph(envelope):
        door.fail(envelope.partial_id, NodeFailure("g/det", "instance 1", "ValueError", "ValueError: bad image"))

    ((status, body),) = serve(hub, door, graph, ["x"])
    assert status == 500 and body["failed"] == "node 'g/det' failed: ValueError: bad image"


def test_a_request_without_result_times_out(hub):
    door = FrontDoor("t", port=0, timeout=0.2)
    ((status, body),) = serve(hub, door, lambda envelope: None, ["x"])
    assert status == 504 and door.inflight() == 0


def test_a_result_nobody_waits_for_is_not_delivered(hub):
    door = FrontDoor("t", port=0)
    assert door.deliver(Envelope.pack("late", info={"partial_id": 99})) is False
    door.close()


def test_a_port_in_use_is_a_front_door_error_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(FrontDoorError, match=f"cannot listen on 127.0.0.1:{port}.*another program"):
            FrontDoor("t", port=port)
