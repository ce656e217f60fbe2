"""ImageServer: ``POST /analyze/{extra_data}`` with an image, answered by the graph.

The graph gets ``{'data': HxWx3 uint8 BGR array, 'extra_data': extra_data}`` (``partial_id`` =
request number). The reply is the JPEG of the returned ``msg['data']`` (``response = "image"``, the
default) or the returned string as ``application/json`` (``response = "json"``). The body is the
image bytes (``Content-Type: image/*``, as the seeds' curl and Python clients send it) or a
multipart form with a file (Swagger UI's "Try it out"). A body that is no decodable image: 400;
too big: 413; a node raised on it: 500 naming the node and its exception; ``max_pending`` requests
already being served: 503 with ``Retry-After``; no result in time: 504.

Args: ``port``, ``host`` (default 127.0.0.1), ``timeout``, ``max_body``, ``max_header``,
``max_inflight``, ``max_pending``, ``retry_after``, ``on_error`` (``"reply"``: a node raising
answers 500 and the service goes on; ``"exit"``: the app ends, exit 1) as in :mod:`.http_node`;
``response`` (``"image"`` or ``"json"``).
"""


import asyncio
import json

import cv2
import numpy as np

from ..frontdoor import RequestFailed
from ..registry import register
from .http_node import HttpServerNode
from .http_routes import ERRORS, make_app, read_body, reply_error

IMAGE_BODY = {
    "required": True,
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
    },
}


@register(name="ImageServer", inputs=["inp"], outputs=["out"])
class ImageServer(HttpServerNode):
    def __init__(self, name, args):
        super().__init__(name, args)
        self.response = str(args.get("response", "image"))
        if self.response not in ("image", "json"):
            raise ValueError(f"ImageServer {name!r}: response must be 'image' or 'json', got {self.response!r}")

    def build_app(self):
        from fastapi import Request

        app = make_app(f"megflow-mp ImageServer {self.name}", "Send an image; the graph's answer comes back.")
        ok = ({"application/json": {"example": '{"label": "cat", "score": 0.93}'}} if self.response == "json"
              else {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}})

        @app.post("/analyze/{extra_data}", summary="Analyze an image",
                  openapi_extra={"requestBody": IMAGE_BODY},
                  responses={200: {"description": "the graph's result", "content": ok}, **ERRORS})
        async def analyze(extra_data: str, request: Request):
            return await self.admit(self.analyze, extra_data, request)

        return app

    async def analyze(self, extra_data: str, request):
        from fastapi import Response

        body = await read_body(request, self.max_body)
        if isinstance(body, Response):
            return body
        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(None, _decode, body)
        if image is None:
            return reply_error(400, f"the body ({len(body)} bytes) is not a decodable image")
        try:
            result = await self.door.request({"data": image, "extra_data": extra_data}, extra_data)
        except asyncio.TimeoutError:
            return reply_error(504, f"no result from the graph within {self.door.timeout:g} s")
        except RequestFailed as exc:
            return reply_error(500, str(exc))
        return await loop.run_in_executor(None, self._reply, result.msg)

    def _reply(self, msg):
        from fastapi import Response

        if self.response == "json":
            text = msg if isinstance(msg, (str, bytes)) else json.dumps(msg)
            return Response(text, media_type="application/json")
        data = msg.get("data") if isinstance(msg, dict) else msg
        if not isinstance(data, np.ndarray):
            return reply_error(500, "the graph's result has no image in msg['data']")
        ok, jpeg = cv2.imencode(".jpg", data)
        return Response(jpeg.tobytes(), media_type="image/jpeg")


def _decode(body: bytes):
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None
