"""ImageServer: ``POST /analyze/{extra_data}`` with an image, answered by the graph.

The graph gets ``{'data': HxWx3 uint8 BGR array, 'extra_data': extra_data}`` (``partial_id`` =
request number). The reply is the JPEG of the returned ``msg['data']`` (``response = "image"``, the
default) or the returned string as ``application/json`` (``response = "json"``). The body is the
image bytes (``Content-Type: image/*``, as the seeds' curl and Python clients send it) or a
multipart form with a file (Swagger UI's "Try it out"). The image's header is read before it is
decoded (:mod:`..imagehead`): an unknown format, a corrupt or truncated image: 400 with the reason;
a body over ``max_body`` or an image of more than ``max_pixels`` pixels (default 50 million, a
decompression bomb is refused before anything is allocated): 413; a node raised on it: 500 naming
the node and its exception; ``max_pending`` requests already being served: 503 with
``Retry-After``; no result in time: 504.

Arguments: the table below; the server ones (listening, TLS, limits, ``on_error``) as in
:mod:`.http_node`.
"""


import asyncio
import json
from typing import Literal

import numpy as np
from pydantic import Field

from ..imagehead import ImageRefused, decode_image
from ..registry import register
from .http_node import HttpArgs, HttpServerNode
from .http_routes import ERRORS, make_app, read_body, reply_error

IMAGE_BODY = {
    "required": True,
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
    },
}


class ImageServerArgs(HttpArgs):
    response: Literal["image", "json"] = Field(
        "image", description="the reply: the JPEG of the returned msg['data'] (image) or the returned string (json)")
    max_pixels: int = Field(50_000_000, ge=1, description="pixels of an image (more: 413, before decoding)")


@register(name="ImageServer", inputs=["inp"], outputs=["out"], args=ImageServerArgs)
class ImageServer(HttpServerNode):
    ARGS = ImageServerArgs

    def __init__(self, name, args):
        super().__init__(name, args)
        self.max_pixels, self.response = self.args.max_pixels, self.args.response

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
        try:
            image = await loop.run_in_executor(None, decode_image, body, self.max_pixels)
        except ImageRefused as exc:
            return reply_error(exc.status, str(exc))
        result, error = await self.ask({"data": image, "extra_data": extra_data}, extra_data)
        if error is not None:
            return error
        return await loop.run_in_executor(None, self._reply, result.msg)

    def _reply(self, msg):
        from fastapi import Response

        if self.response == "json":
            text = msg if isinstance(msg, (str, bytes)) else json.dumps(msg)
            return Response(text, media_type="application/json")
        data = msg.get("data") if isinstance(msg, dict) else msg
        if not isinstance(data, np.ndarray):
            return reply_error(500, "the graph's result has no image in msg['data']")
        import cv2  # loaded by the server process only, not by check

        ok, jpeg = cv2.imencode(".jpg", data)
        return Response(jpeg.tobytes(), media_type="image/jpeg")

