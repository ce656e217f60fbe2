"""ImageInput: the images of directories into the graph, for pipeline-level tests (no HTTP).

Arguments: ``urls`` (directories, not recursive; files with an image extension, sorted by name).
Each image goes out as ``{'data': HxWx3 BGR, 'extra_data': file stem}`` with sequential
``partial_id``; after the last one ``out`` ends, and the node ends when the results coming back on
``inp`` have ended too (each result is counted; strings are logged at INFO level). A file that is
not a decodable image is reported and skipped.
"""

import logging
from pathlib import Path


from pydantic import Field

from ..envelope import Envelope
from ..nodeargs import NodeArgs, StrList
from ..registry import register

log = logging.getLogger("megflow_mp")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(dirs) -> list[Path]:
    """The image files directly in each directory, sorted; a missing directory is an error."""
    out = []
    for d in ([dirs] if isinstance(dirs, str) else dirs):
        path = Path(d)
        if not path.is_dir():
            raise FileNotFoundError(f"ImageInput: {d} is not a directory")
        out += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return out


class ImageInputArgs(NodeArgs):
    urls: StrList = Field([], description="directories of images (not recursive), sent in name order")


@register(name="ImageInput", inputs=["inp"], outputs=["out"], args=ImageInputArgs)
class ImageInput:
    drain_as_source = True

    def __init__(self, name, args):
        self.name = name
        self.files = list_images(ImageInputArgs.of(args, f"ImageInput {name!r}").urls)
        self.results = 0
        self.started = False

    def bind_runtime(self, worker, node):
        self.hub, self.out_port = worker.hub, node.outputs["out"]

    def exec(self):
        if not self.started:
            self.started = True
            self.hub.spawn(self.feed)  # sending and receiving run side by side: no deadlock on full channels
        envelope = self.inp.recv()
        if envelope is None:
            log.info("ImageInput %r: %d images, %d results", self.name, len(self.files), self.results)
            return
        self.results += 1
        if isinstance(envelope.msg, str):
            log.info("%s: %s", envelope.extra_data, envelope.msg)

    def feed(self):
        pid = 0
        for path in self.files:
            import cv2  # loaded by the node process only, not by check

            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.error("ImageInput %r: %s is not a decodable image; skipped", self.name, path)
                continue
            self.out.send(Envelope.pack({"data": image, "extra_data": path.stem},
                                        info={"partial_id": pid, "extra_data": path.stem}))
            pid += 1
        self.out_port.close()
