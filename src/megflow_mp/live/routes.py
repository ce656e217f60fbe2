"""The live-view pages of a VideoServer's front door.

``GET /view``: the streams with links to their pages. ``GET /view/{id}``: the player page of one
stream (plain HTML + ``/view/_assets/player.js``, served from this package: no CDN, no build step).
``GET /view/{id}/live.mp4``: the stream as fragmented MP4, sent as it is encoded (an init segment,
then one fragment per frame from a keyframe on); its ``Content-Type`` carries the ``codecs`` value
the page gives Media Source Extensions. The response starts with the first keyframe after the
request (504 when none comes within ``wait`` seconds: no frames reach the stream's Visualize node)
and ends with the stream. ``GET /view/{id}/stats``: the channel's counters (viewers, frames
offered, encoded and skipped, keyframes, bytes).

A stream that ended for good (``finished``, ``stopped``, ``error``; not one being started again)
is answered 410 by the page ("stream N has ended", an HTML page without the player) and by
``live.mp4``; an id the server does not know, 404. The player stops on either answer (it retries
anything else, a 504 included) and says why. Ended streams that ``/list`` no longer shows (it
keeps the latest ones) are still 410 for the ids this process saw end.

Each stream object is expected to have ``id``, ``shown_url`` (its URL with secrets shown as ``***``,
:mod:`..video.redact`: the only one shown), ``state`` and ``view`` (its :class:`~.channel.LiveChannel`).
"""

from __future__ import annotations

import asyncio
import html
from pathlib import Path
from typing import Callable

ASSETS = Path(__file__).with_name("assets")
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
FINAL_STATES = ("finished", "stopped", "error")
REMEMBER_ENDED = 10000  # ended ids kept for a 410 once the server forgot the stream


def has_ended(stream) -> bool:
    """Whether ``stream`` ended for good: a remote stream's ``ended``; a local one's end (``done``)
    in a final state (a failed stream being started again shows ``restarting``)."""
    flag = getattr(stream, "ended", None)
    if isinstance(flag, bool):
        return flag
    done = getattr(stream, "done", None)
    return bool(getattr(done, "done", False)) and getattr(stream, "state", "") in FINAL_STATES


def add_view_routes(app, streams: Callable[[], dict], wait: float = 10.0) -> None:
    """Add the routes above to ``app``; ``streams()`` gives the server's ``{id: stream}``."""
    from fastapi import Response
    from fastapi.responses import HTMLResponse, StreamingResponse

    from .. import __version__
    from ..nodes.http_routes import reply_error
    from ..video.spec import parse_sid, sid_order

    ended_ids: dict = {}  # ids seen ended, oldest first (a 410 after the server forgot them)

    def find(sid: str):
        stream = streams().get(parse_sid(sid))
        return stream if stream is not None and getattr(stream, "view", None) is not None else None

    def gone(sid: str):
        """An error response when stream ``sid`` has ended (410) or is unknown (404); None: it is live."""
        key = parse_sid(sid)
        stream = streams().get(key)
        if stream is not None and has_ended(stream):
            ended_ids[key] = None
            while len(ended_ids) > REMEMBER_ENDED:
                del ended_ids[next(iter(ended_ids))]
            return 410
        if stream is None and key in ended_ids:
            return 410
        return 404 if find(sid) is None else None

    @app.get("/view/_assets/{name}", include_in_schema=False)
    async def asset(name: str):
        path = ASSETS / name
        if "/" in name or path.suffix not in ASSET_TYPES or not path.is_file():
            return reply_error(404, f"no asset {name}")
        return Response(path.read_bytes(), media_type=ASSET_TYPES[path.suffix],
                        headers={"Cache-Control": "no-cache"})

    @app.get("/view", summary="Live views: the streams, with links to their pages", response_class=HTMLResponse)
    async def index():
        rows = []
        for sid, stream in sorted(list(streams().items()), key=lambda kv: sid_order(kv[0])):  # a copy
            link = f'<a href="/view/{sid}">stream {sid}</a>' if find(str(sid)) else f"stream {sid}"
            rows.append(f"<li>{link} <code>{html.escape(stream.shown_url)}</code> {html.escape(stream.state)}</li>")
        body = "\n".join(rows) or "<li>no stream yet: POST /start/{url}</li>"
        return HTMLResponse(INDEX.format(version=__version__, rows=body))

    @app.get("/view/{sid}", summary="The live view of a stream (an HTML page)", response_class=HTMLResponse,
             responses={404: {"description": "no stream with this id"},
                        410: {"description": "the stream has ended (an HTML page that says so)"}})
    async def page(sid: str):
        status = gone(sid)
        if status == 410:
            return HTMLResponse(ENDED.format(sid=html.escape(sid)), status_code=410,
                                headers={"Cache-Control": "no-store"})
        if status is not None:
            return reply_error(404, f"no stream {sid}")
        return HTMLResponse((ASSETS / "view.html").read_text().replace("{{sid}}", html.escape(sid)),
                            headers={"Cache-Control": "no-store"})

    @app.get("/view/{sid}/stats", summary="Counters of a stream's live view",
             responses={404: {"description": "no stream with this id"}})
    async def stats(sid: str):
        stream = find(sid)
        if stream is None:
            return reply_error(404, f"no stream {sid}")
        return stream.view.stats()

    @app.get("/view/{sid}/live.mp4", summary="The live stream as fragmented MP4 (H.264)",
             responses={200: {"content": {"video/mp4": {}}}, 404: {"description": "no stream with this id"},
                        410: {"description": "the stream has ended"},
                        504: {"description": "no frame reached the stream's Visualize node in time"}})
    async def live(sid: str):
        status = gone(sid)
        if status == 410:
            return reply_error(410, f"stream {sid} has ended")
        stream = find(sid)
        if status is not None or stream is None:
            return reply_error(404, f"no stream {sid}")
        channel = stream.view
        viewer = channel.add_viewer()
        try:
            codecs = await asyncio.wait_for(asyncio.shield(viewer.ready), wait)
        except asyncio.TimeoutError:
            codecs = None
        if codecs is None:
            channel.remove_viewer(viewer)
            if channel.ended or gone(sid) == 410:
                return reply_error(410, f"stream {sid} has ended")
            return reply_error(504, f"stream {sid}: no frame to show within {wait:g} s")

        async def body():
            try:
                async for chunk in viewer.chunks():
                    yield chunk
            finally:
                channel.remove_viewer(viewer)

        return StreamingResponse(body(), media_type=f'video/mp4; codecs="{codecs}"',
                                 headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


ENDED = """<!doctype html>
<html><head><meta charset="utf-8"><title>megflow-mp live view: stream {sid} has ended</title>
<style>body{{margin:0;background:#111;color:#ddd;font:14px sans-serif}} header{{padding:6px 12px;display:flex;
gap:1.5em;align-items:baseline}} header a{{color:#8cf}}</style></head>
<body><header><strong>stream {sid}</strong><span id="status" data-state="ended">stream {sid} has ended</span>
<a href="/view">all streams</a></header></body></html>
"""

INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>megflow-mp live views</title>
<meta http-equiv="refresh" content="5">
<style>body{{font:15px sans-serif;margin:2em}} code{{color:#555}}</style></head>
<body><h1>Live views</h1><ul>
{rows}
</ul><p><small>megflow-mp {version}</small></p></body></html>
"""
