"""Live messages of a VideoServer's streams over Server-Sent Events: ``/streams/{id}/events``, ``/events``.

Each event is one delivered message (:mod:`..video.messages`)::

    id: 41
    event: message
    data: {"stream":"gate","seq":41,"ts":1765142400.123,"message":{"boxes":[[10,20,50,80]]}}

``id`` is the message's ``seq`` on ``/streams/{id}/events``, and on ``/events`` (every stream) the
server's *cursor*: one number over all the messages of this VideoServer, in the order replica 0
numbered them (each stream's messages in their own order), kept across restarts of the app like
``seq``. One number is enough to resume every stream at once, and it stays short whatever the
number of streams.

Resume: ``Last-Event-ID`` (the header browsers' EventSource sends when it reconnects), or the
query parameter ``last_event_id`` for clients that cannot set headers (the header wins), gives the
last id the client has; the stream continues after it from what the server keeps (``events_buffer``
messages per stream, ``events_buffer_all`` for ``/events``). ``-1`` asks for everything kept.
Without either, the consumer gets the messages from now on. When messages it asked for are no
longer kept, an ``event: gap`` comes first, with ``data: {"stream": ..., "last_event_id": N,
"next": M, "missed": K}`` (``missed``: ids between, counted as numbers; after a SIGKILL of the app
the numbers it skipped count too; null when N is no id this server gave, e.g. its state directory
was lost: it then sends everything it keeps).

Consumers: any number, each gets every message. A consumer is only a cursor into what the server
keeps: the pipeline never waits for one; one that falls more than the buffer behind (a slow network,
a stalled reader) gets ``event: gap`` and continues from the oldest message kept; it is not
disconnected. A comment (``: keep-alive``) is sent after 15 s without events. The response ends
when the server stops; a stream's end does not end it (the id may run again, its numbers continue).
"""

from __future__ import annotations

import asyncio

from ..video.messages import ALL, MessageLog
from .http_routes import ERROR_SCHEMA

BATCH = 512  # events written at most at once to one consumer
HEARTBEAT = 15.0
RETRY_MS = 2000  # how long EventSource waits before it reconnects
EXAMPLE_STREAM = ('retry: 2000\n\n'
                  'id: 41\nevent: message\ndata: {"stream":"gate","seq":41,"ts":1765142400.123,'
                  '"message":{"boxes":[[10,20,50,80]],"label":"person"}}\n\n'
                  ': keep-alive\n\n')
EXAMPLE_ALL = ('retry: 2000\n\n'
               'event: gap\ndata: {"stream":null,"last_event_id":1200,"next":1305,"missed":104}\n\n'
               'id: 1305\nevent: message\ndata: {"stream":"yard","seq":17,"ts":1765142400.25,'
               '"message":"{\\"count\\": 3}"}\n\n')


def event_stream_responses(example: str, not_found: dict | None = None) -> dict:
    responses = {200: {"description": "Server-Sent Events, as they come (see the description)",
                       "content": {"text/event-stream": {"schema": {"type": "string"}, "example": example}}},
                 400: {"description": "a Last-Event-ID that is not an integer >= -1",
                       "content": {"application/json": {"schema": ERROR_SCHEMA, "example": {
                           "detail": "Last-Event-ID must be an integer >= -1, got 'abc'"}}}}}
    if not_found:
        responses.update(not_found)
    return responses


def add_event_routes(app, log: MessageLog, exists, heartbeat: float = HEARTBEAT) -> None:
    """Add the two routes to ``app``; ``exists(sid)`` (on the event loop: never blocking) says whether
    the server has stream ``sid``: its events are served when it has, or when it ever sent a message."""
    from fastapi import Header, Query
    from fastapi.responses import StreamingResponse

    from ..video.spec import parse_sid
    from .http_routes import reply_error
    from .video_routes import NOT_FOUND

    class EventStream(StreamingResponse):
        media_type = "text/event-stream"

    def after_of(header: str | None, query: str | None):
        """(last id or None, error response or None)."""
        raw = header if header is not None else query
        if raw is None or raw.strip() == "":
            return None, None
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
        if value is None or value < -1:
            return None, reply_error(400, f"Last-Event-ID must be an integer >= -1, got {raw[:40]!r}")
        return value, None

    def respond(sid, after):
        loop = asyncio.get_running_loop()
        sub = log.subscribe(sid, after, loop, asyncio.Event())
        return EventStream(events(log, sub, sid, heartbeat), headers={"Cache-Control": "no-store",
                                                                      "X-Accel-Buffering": "no"})

    last_header = Header(None, alias="Last-Event-ID", description="the id of the last event the client has "
                         "(EventSource sends it when it reconnects); -1: everything kept")
    last_query = Query(None, description="the same, for clients that cannot set headers (the header wins)",
                       examples=["41"])

    @app.get("/streams/{sid}/events", summary="A stream's messages, live (Server-Sent Events)", tags=["streams"],
             response_class=EventStream, responses=event_stream_responses(EXAMPLE_STREAM, NOT_FOUND),
             description=STREAM_DOC)
    async def stream_events(sid: str, last_event_id: str | None = last_query,
                            last_event_id_header: str | None = last_header):
        key = parse_sid(sid)
        after, error = after_of(last_event_id_header, last_event_id)
        if error is not None:
            return error
        if not log.knows(key) and not exists(key):
            return reply_error(404, f"no stream {sid}")
        return respond(key, after)

    @app.get("/events", summary="Every stream's messages, live (Server-Sent Events)", tags=["streams"],
             response_class=EventStream, responses=event_stream_responses(EXAMPLE_ALL), description=ALL_DOC)
    async def all_events(last_event_id: str | None = last_query,
                         last_event_id_header: str | None = last_header):
        after, error = after_of(last_event_id_header, last_event_id)
        if error is not None:
            return error
        return respond(ALL, after)


async def events(log: MessageLog, sub, sid, heartbeat: float):
    """The event stream of consumer ``sub``; it leaves the log when the response ends (client gone)."""
    per_stream = sid != ALL
    try:
        yield f"retry: {RETRY_MS}\n\n"
        while True:
            gap, records, closed = log.read(sub, BATCH)
            if gap is not None or records:
                out = [f"event: gap\ndata: {gap.data()}\n\n"] if gap is not None else []
                out += [f"id: {r.seq if per_stream else r.cursor}\nevent: message\ndata: {r.data}\n\n"
                        for r in records]
                yield "".join(out)
                continue
            if closed:
                return
            try:
                await asyncio.wait_for(sub.event.wait(), heartbeat)
            except asyncio.TimeoutError:
                yield ": keep-alive\n\n"
    finally:
        log.unsubscribe(sub)


STREAM_DOC = ("Every message the stream's subgraph sends out, as it comes: `event: message`, `id:` its `seq`, "
              "`data:` `{\"stream\", \"seq\", \"ts\", \"message\"}` (the message a string as sent, or a JSON value). "
              "`Last-Event-ID` (or `?last_event_id=`) resumes after that seq from the last `events_buffer` "
              "messages kept (`-1`: all kept); older ones are announced by an `event: gap` "
              "(`{\"stream\", \"last_event_id\", \"next\", \"missed\"}`). A consumer that falls behind gets a gap and "
              "continues; it never slows the stream. A `: keep-alive` comment after 15 s of silence.")
ALL_DOC = ("Every stream's messages, as they come: `event: message`, `data:` `{\"stream\", \"seq\", \"ts\", "
           "\"message\"}`, `id:` the server's cursor (one number over all streams, increasing, kept across "
           "restarts): `Last-Event-ID` (or `?last_event_id=`) resumes every stream at once from the last "
           "`events_buffer_all` messages kept (`-1`: all kept); older ones are announced by an `event: gap`. "
           "Streams on every replica (`cloned = N`) are included.")
