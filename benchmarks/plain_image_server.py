"""The plain baseline of bench_image_server.py: FastAPI + uvicorn, one process, one worker.

``POST /analyze/{extra_data}`` with an image body answers its JPEG re-encoding: the work the
engine's ImageServer does around a pass-through graph, done the same way (body read, then
``cv2.imdecode`` and ``cv2.imencode`` on the event loop's default thread pool, as ImageServer does),
without the graph hop. Run as a subprocess: ``python benchmarks/plain_image_server.py [--loop L]``;
binds any free port on 127.0.0.1 and prints ``listening on http://127.0.0.1:PORT`` to stderr once
uvicorn serves. ``--loop auto`` (uvicorn's default: uvloop when installed) or ``asyncio`` (the
stdlib loop, which the engine's front door runs on). Ctrl-C/SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys

import cv2
import numpy as np
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse


def _decode(body: bytes):
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None


def _encode(image) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", image)
    return jpeg.tobytes()


def make_app() -> FastAPI:
    app = FastAPI(title="plain image server", docs_url=None, redoc_url=None)

    @app.post("/analyze/{extra_data}")
    async def analyze(extra_data: str, request: Request):
        body = await request.body()
        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(None, _decode, body)
        if image is None:
            return JSONResponse({"detail": "not a decodable image"}, status_code=400)
        jpeg = await loop.run_in_executor(None, _encode, image)
        return Response(jpeg, media_type="image/jpeg")

    return app


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    args = p.parse_args(argv)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = uvicorn.Config(make_app(), loop=args.loop, log_level="warning", lifespan="off", access_log=False,
                            workers=1)
    server = uvicorn.Server(config)

    async def serve():
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            loop = type(asyncio.get_running_loop()).__module__
            print(f"plain uvicorn ({loop}) listening on http://{args.host}:{port}", file=sys.stderr, flush=True)
        await task

    from uvicorn._compat import asyncio_run

    try:
        asyncio_run(serve(), loop_factory=config.get_loop_factory())
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it caught, once it shut down cleanly
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
