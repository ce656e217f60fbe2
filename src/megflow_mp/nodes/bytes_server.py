"""BytesServer: ``POST /analyze/{extra_data}`` (``/analyze/bytes`` in MegFlow's clients) with any body.

The graph gets ``{'data': 1-D uint8 array of the body, 'extra_data': extra_data}``; the reply is the
returned ``msg['data']`` (bytes or a uint8 array) as ``application/octet-stream``.

Arguments: the table below, as in :mod:`.http_node` (a result later than ``timeout``: 504; a body
over ``max_body``: 413; past ``max_pending``: 503; ``on_error = "reply"``: a node raising on a
request answers it 500 naming the node and its exception, and the service goes on; ``"exit"``: the
app ends).
"""



import numpy as np

from ..registry import register
from .http_node import HttpArgs, HttpServerNode
from .http_routes import ERRORS, make_app, read_body, reply_error


@register(name="BytesServer", inputs=["inp"], outputs=["out"], args=HttpArgs)
class BytesServer(HttpServerNode):
    def build_app(self):
        from fastapi import Request

        app = make_app(f"megflow-mp BytesServer {self.name}", "Send bytes; get bytes back.")
        body_spec = {"required": True,
                     "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}

        @app.post("/analyze/{extra_data}", summary="Process raw bytes", openapi_extra={"requestBody": body_spec},
                  responses={200: {"description": "the graph's result",
                                   "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                       "format": "binary"}}}},
                             **ERRORS})
        async def analyze(extra_data: str, request: Request):
            return await self.admit(self.analyze, extra_data, request)

        return app

    async def analyze(self, extra_data: str, request):
        from fastapi import Response

        body = await read_body(request, self.max_body)
        if isinstance(body, Response):
            return body
        data = np.frombuffer(body, np.uint8)
        result, error = await self.ask({"data": data, "extra_data": extra_data}, extra_data)
        if error is not None:
            return error
        out = result.msg.get("data") if isinstance(result.msg, dict) else result.msg
        if isinstance(out, np.ndarray):
            out = out.tobytes()
        if not isinstance(out, (bytes, bytearray)):
            return reply_error(500, "the graph's result has no bytes in msg['data']")
        return Response(bytes(out), media_type="application/octet-stream")
