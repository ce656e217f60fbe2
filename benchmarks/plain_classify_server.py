"""The plain baseline of bench_classify_server.py: a FastAPI + onnxruntime classification endpoint.

What a user writes instead of the engine app: one process, uvicorn, ``POST /analyze/{extra_data}``
with a JPEG body answered ``{"extra_data": ..., "batch": 1, "top": [{"label", "score"}, ...]}``
(the top 5 of MobileNetV2, best first, as the engine app answers). Decode (``cv2.imdecode``),
pre-processing, inference and top-k are those of :class:`megflow_mp.models.Classifier`, the same
code the engine's node calls; no batching (one image per inference).

``python benchmarks/plain_classify_server.py [--endpoint sync|async] [--threads T] [--sessions K]``:

* ``sync`` (default): a ``def`` route, which FastAPI runs on its thread pool, so decodes and
  inferences of concurrent requests overlap (cv2 and onnxruntime release the GIL); ``K`` classifiers
  (onnxruntime sessions of ``T`` intra-op threads each) serve at most ``K`` inferences at once.
* ``async``: an ``async def`` route doing the same work inline on the event loop (one request at a
  time: the simplest code, as in most tutorials); ``K`` is then 1.

Binds any free port of 127.0.0.1 and prints ``listening on http://127.0.0.1:PORT`` to stderr once
uvicorn serves; SIGINT stops it.
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import sys
from pathlib import Path

import cv2
import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, Request, Response

MODEL = "models/mobilenet_v2_1.0_224_fp32.onnx"


def make_app(model: str, endpoint: str, threads: int, sessions: int) -> FastAPI:
    from megflow_mp.models import Classifier

    pool: queue.Queue = queue.Queue()
    for _ in range(sessions if endpoint == "sync" else 1):
        classifier = Classifier(model, topk=5, threads=threads)
        classifier.classify(np.zeros((224, 224, 3), np.uint8))  # warm up
        pool.put(classifier)

    def answer(extra_data: str, body: bytes) -> Response:
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return Response(json.dumps({"detail": "not a decodable image"}), 400, media_type="application/json")
        classifier = pool.get()
        try:
            (top,) = classifier.classify([image])
        finally:
            pool.put(classifier)
        result = {"extra_data": extra_data, "batch": 1,
                  "top": [{"label": label, "score": round(score, 6)} for label, score in top]}
        return Response(json.dumps(result), media_type="application/json")

    app = FastAPI(title="plain classification server", docs_url=None, redoc_url=None)
    if endpoint == "sync":
        async def body_of(request: Request) -> bytes:  # read on the loop; the route runs on the pool
            return await request.body()

        @app.post("/analyze/{extra_data}")
        def analyze_sync(extra_data: str, body: bytes = Depends(body_of)):
            return answer(extra_data, body)
    else:
        @app.post("/analyze/{extra_data}")
        async def analyze_async(extra_data: str, request: Request):
            return answer(extra_data, await request.body())
    return app


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=MODEL)
    p.add_argument("--endpoint", default="sync", choices=["sync", "async"])
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads per session")
    p.add_argument("--sessions", type=int, default=1, help="classifiers serving at once (sync only)")
    p.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    args = p.parse_args(argv)
    if not Path(args.model).is_file():
        p.error(f"model file not found: {args.model}")
    app = make_app(args.model, args.endpoint, args.threads, max(1, args.sessions))
    sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port = sock.getsockname()[1]
    app.router.on_startup.append(
        lambda: print(f"plain {args.endpoint} listening on http://127.0.0.1:{port}", file=sys.stderr, flush=True))
    config = uvicorn.Config(app, loop=args.loop, log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it caught, once it shut down cleanly
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
