"""What the live-view test and benchmark share: a drawing node that stamps each frame, the app
around it, and the scripts that read the stamps back from what chromium shows.

``Stamp`` (a plugin node) draws on every frame, in place: a filled box of ``BOX_BGR`` over
``BOX`` (x0, y0, x1, y1), and the wall-clock time in ms (mod 2**BITS) as a bar code of ``BITS``
black/white cells of ``CELL`` px at ``y = BAR_Y``; with ``noise = true`` also a patch of random
pixels (a stream that needs a high bitrate). ``PROBE_JS(count, ms)`` runs in the view page: for
``count`` presented frames (``requestVideoFrameCallback``) it draws the video into a canvas and
returns, per frame, the box pixel, the stamp read back and the latency (display time - stamp, ms).
"""

from __future__ import annotations

CELL, BITS, BAR_Y = 40, 24, 620
BOX, BOX_BGR = (200, 200, 400, 360), (0, 255, 0)
PROBE_POINT = (300, 280)  # inside BOX

STAMP_NODE = f'''
import time
import cv2
import numpy as np
from megflow import register

CELL, BITS, BAR_Y = {CELL}, {BITS}, {BAR_Y}


@register(inputs=["inp"], outputs=["out"])
class Stamp:
    def __init__(self, name, args):
        self.noise = bool(args.get("noise", False))
        self.rng = np.random.default_rng(0)

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        frame = envelope.msg["data"]
        cv2.rectangle(frame, {BOX[:2]}, {BOX[2:]}, {BOX_BGR}, -1)
        if self.noise:
            frame[0:192, 640:1280] = self.rng.integers(0, 256, (192, 640, 3), np.uint8)
        ms = int(time.time() * 1000) % (1 << BITS)
        frame[BAR_Y - 8:BAR_Y + CELL + 8, :BITS * CELL + 16] = 128
        for b in range(BITS):
            x = 8 + b * CELL
            frame[BAR_Y:BAR_Y + CELL, x:x + CELL] = 255 if (ms >> (BITS - 1 - b)) & 1 else 0
        self.out.send(envelope)
'''


def app_toml(port: int, allow_dir: str, noise: bool = False, visualize: str = "") -> str:
    """A VideoServer (files paced at their frame rate) whose streams go Stamp -> Visualize."""
    return f'''
main = "main"

[[graphs]]
name = "sub"
inputs = [{{ name = "inp", cap = 16, ports = ["stamp:inp"] }}]
outputs = [{{ name = "out", cap = 16, ports = ["view:out"] }}]
connections = [{{ cap = 16, ports = ["stamp:out", "view:inp"] }}]

    [[graphs.nodes]]
    name = "stamp"
    ty = "Stamp"
    noise = {str(noise).lower()}

    [[graphs.nodes]]
    name = "view"
    ty = "Visualize"
    {visualize}

[[graphs]]
name = "main"
connections = [
  {{ cap = 16, ports = ["source:out", "dest:inp"] }},
  {{ cap = 16, ports = ["source:inp", "dest:out"] }},
]

    [[graphs.nodes]]
    name = "source"
    ty = "VideoServer"
    port = {port}
    allow_dirs = ["{allow_dir}"]
    realtime = true

    [[graphs.nodes]]
    name = "dest"
    ty = "sub"
'''


PROBE_JS = """
(async (count, ms) => {
  const CELL = %d, BITS = %d, BAR_Y = %d, PX = %d, PY = %d, MOD = 2 ** BITS;
  const video = document.querySelector("video");
  const deadline = performance.now() + ms;
  while (video.readyState < 2 || !video.videoWidth) {
    if (performance.now() > deadline) throw new Error("no frame shown; page says: " + document.body.innerText);
    await new Promise(r => setTimeout(r, 50));
  }
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  const g = canvas.getContext("2d", { willReadFrequently: true });
  const out = [];
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("only " + out.length + " frames presented")), ms);
    const step = (now, meta) => {
      g.drawImage(video, 0, 0);
      let stamp = 0;
      for (let b = 0; b < BITS; b++) {
        const p = g.getImageData(8 + b * CELL + CELL / 2, BAR_Y + CELL / 2, 1, 1).data;
        stamp = stamp * 2 + ((p[0] + p[1] + p[2]) / 3 > 128 ? 1 : 0);
      }
      const shown = Math.round(performance.timeOrigin + meta.expectedDisplayTime);
      const q = video.getVideoPlaybackQuality();
      out.push({ stamp: stamp, latency: ((shown - stamp) %% MOD + MOD) %% MOD,
                 box: Array.from(g.getImageData(PX, PY, 1, 1).data).slice(0, 3),
                 decoded: q.totalVideoFrames, dropped: q.droppedVideoFrames,
                 width: meta.width, height: meta.height });
      if (out.length >= count) { clearTimeout(timer); resolve(out); } else video.requestVideoFrameCallback(step);
    };
    video.requestVideoFrameCallback(step);
  });
})
""" % (CELL, BITS, BAR_Y, PROBE_POINT[0], PROBE_POINT[1])


def probe(browser, count: int, timeout_ms: int = 30000) -> list[dict]:
    """Run :data:`PROBE_JS` in ``browser``'s page for ``count`` presented frames."""
    return browser.evaluate(f"{PROBE_JS}({count}, {timeout_ms})", timeout=timeout_ms / 1000 + 10)
