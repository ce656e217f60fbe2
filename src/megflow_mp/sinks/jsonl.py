"""JsonlSink's destination: one JSON record per line appended to a file, rotated by size.

Accepted: the batch written (one ``write`` of all its lines to the file opened ``O_APPEND``) and,
with ``fsync = "always"`` (the default), fsync'd; with ``fsync = "never"`` the kernel writes it
when it likes (a crash of the machine may lose the last seconds, a kill of the app loses nothing).
Rotation: a batch that would take the file past ``max_bytes`` first renames it ``<path>.1`` (the
older ones to ``.2`` ... ``.<backups>``, the oldest removed) and starts a new file.
"""

from __future__ import annotations

import os
from pathlib import Path

from .destination import Destination


class JsonlFile(Destination):
    kind = "JsonlSink"

    def __init__(self, a, common, node_id: str):
        super().__init__()
        path = a.string("path", required=True)
        if not path:
            raise a.error("path", "must not be empty")
        self.path = Path(path).expanduser()
        if self.path.exists() and not self.path.is_file():
            raise a.error("path", f"{self.path} exists and is not a file")
        self.max_bytes = a.number("max_bytes", 64 << 20, least=0, integer=True)  # 0: never rotate
        self.backups = a.number("backups", 5, least=0, integer=True)
        self.fsync = a.choice("fsync", "always", ("always", "never"))
        self.shown = str(self.path)
        self.fd: int | None = None
        self.size = 0

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.size = os.fstat(self.fd).st_size

    def _rotate(self) -> None:
        os.close(self.fd)
        self.fd = None
        if self.backups == 0:
            os.unlink(self.path)
        else:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def send(self, records, payloads) -> None:
        if self.fd is None:
            self._open()
        data = ("\n".join(payloads) + "\n").encode("utf-8")
        if self.max_bytes and self.size and self.size + len(data) > self.max_bytes:
            self._rotate()
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.size += len(data)
        if self.fsync == "always":
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
