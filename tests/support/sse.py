"""A plain Server-Sent Events client over ``requests`` (stream=True), parsing the wire format itself.

    with SSE(f"{url}/events", last_event_id="41") as sse:      # subscribed once the constructor returns
        for event in sse.events():                            # Event(id, event, data, comments)
            ...

The constructor returns once the response headers came (the server registered the consumer by
then). ``events()`` yields every event (``message`` and ``gap``) as it is parsed; comments
(``: keep-alive``) are kept in ``comments``. A read waits at most ``timeout`` seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import requests


@dataclass
class Event:
    id: str | None
    event: str
    data: str

    def json(self):
        return json.loads(self.data)


@dataclass
class SSE:
    url: str
    last_event_id: str | None = None
    header: bool = True  # send last_event_id as the Last-Event-ID header, else as ?last_event_id=
    timeout: float = 60
    comments: list = field(default_factory=list)
    retry: int | None = None

    def __post_init__(self):
        headers, params = {"Accept": "text/event-stream"}, {}
        if self.last_event_id is not None:
            if self.header:
                headers["Last-Event-ID"] = str(self.last_event_id)
            else:
                params["last_event_id"] = str(self.last_event_id)
        self.response = requests.get(self.url, headers=headers, params=params, stream=True, timeout=self.timeout)
        self.status = self.response.status_code
        self.content_type = self.response.headers.get("content-type", "")
        self._events = self._read() if self.status == 200 else iter(())

    def events(self):
        """The events as they come (one iterator per client: reading on after ``take`` continues)."""
        return self._events

    def _read(self):
        buf = b""
        for chunk in self.response.iter_content(chunk_size=None):
            buf += chunk
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                event = self._parse(block.decode())
                if event is not None:
                    yield event

    def take(self, n: int, kind: str = "message") -> list[Event]:
        """The next events until ``n`` of ``kind`` came (every event read is returned, gaps included)."""
        out, seen = [], 0
        if n <= 0:
            return out
        for event in self.events():
            out.append(event)
            seen += event.event == kind
            if seen >= n:
                return out
        raise AssertionError(f"the event stream ended after {seen} of {n} {kind} events")

    def _parse(self, block: str) -> Event | None:
        eid, kind, data = None, "message", []
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                eid = value
            elif name == "event":
                kind = value
            elif name == "data":
                data.append(value)
            elif name == "retry":
                self.retry = int(value)
        if not data:
            return None
        return Event(eid, kind, "\n".join(data))

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> "SSE":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
