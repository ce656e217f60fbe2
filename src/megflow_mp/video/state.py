"""The streams a VideoServer keeps across restarts of its app: one JSON file in a state directory.

Streams started over HTTP (``/start``, ``POST /streams``) are recorded with their id, URL and own
options; ``/stop``, ``DELETE /streams/{id}`` and the end of a file forget them. When the app starts
again (after a crash, a SIGKILL of the supervisor, a planned restart) the server starts the
recorded streams again under the same ids. Streams declared in the config are not recorded: the
config is their record.

Where: the node's ``state_dir``, else ``megflow-mp run --state-dir DIR`` (the environment variable
``MEGFLOW_MP_STATE_DIR``), else ``$XDG_STATE_HOME/megflow-mp/<config stem>-<hash of its path>``
(``~/.local/state/...``); the file is ``<dir>/<node name>.json``.

Every write is atomic (a temporary file in the same directory, fsync, rename, fsync of the
directory): a crash leaves the old file or the new one, never half of one. A file that cannot be
read, is not JSON, or was written by something else (another format, another node) is moved
aside as ``<name>.json.bad-<time>`` with one warning naming both paths; the server starts with no
recorded streams. A write that fails (a read-only directory) is one warning; the streams go on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger("megflow_mp")
FORMAT = "megflow-mp video streams"
VERSION = 1
ENV = "MEGFLOW_MP_STATE_DIR"


def state_dir(node_arg: str | None, app_file: str) -> Path:
    """The state directory of a VideoServer of the app in ``app_file`` (see the module's docstring)."""
    if node_arg:
        return Path(node_arg).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    config = Path(app_file).resolve()
    return base / "megflow-mp" / f"{config.stem}-{hashlib.sha1(str(config).encode()).hexdigest()[:8]}"


class StreamStore:
    """The recorded streams of VideoServer ``node``: ``{id: {"id", "url", "options"}}`` in id order
    of recording. Thread-safe."""

    def __init__(self, directory: Path, node: str):
        self.path = Path(directory) / f"{node.replace('/', '_')}.json"
        self.node = node
        self.records: dict = {}
        self.lock = threading.Lock()
        self.warned = False

    def load(self) -> list[dict]:
        """The recorded streams (and keep them); [] with a warning when the file is not usable."""
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("state file %s cannot be read (%s): no stream is started again", self.path, exc.strerror)
            return []
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("not a megflow-mp streams file")
            if data.get("node") != self.node:
                raise ValueError(f"it belongs to node {data.get('node')!r}, not {self.node!r}")
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r}, this server reads {VERSION}")
            records = [r for r in data["streams"] if isinstance(r, dict) and "id" in r and isinstance(r.get("url"), str)]
        except (ValueError, KeyError, TypeError) as exc:
            self._move_aside(str(exc) if not isinstance(exc, json.JSONDecodeError) else f"not JSON: {exc}")
            return []
        with self.lock:
            self.records = {r["id"]: {"id": r["id"], "url": r["url"], "options": dict(r.get("options") or {})}
                            for r in records}
            return list(self.records.values())

    def _move_aside(self, why: str) -> None:
        aside = self.path.with_name(f"{self.path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(self.path, aside)
            where = f"moved to {aside}"
        except OSError as exc:
            where = f"left in place ({exc.strerror})"
        log.warning("state file %s is not usable (%s): %s; no stream is started again from it", self.path, why, where)

    def put(self, sid, url: str, options: dict) -> None:
        with self.lock:
            self.records[sid] = {"id": sid, "url": url, "options": dict(options)}
            self._write()

    def forget(self, sid) -> None:
        with self.lock:
            if self.records.pop(sid, None) is not None:
                self._write()

    def _write(self) -> None:
        data = {"format": FORMAT, "version": VERSION, "node": self.node, "streams": list(self.records.values())}
        try:
            write_json_atomic(self.path, data, indent=1)
            self.warned = False
        except OSError as exc:
            if not self.warned:
                self.warned = True
                log.warning("state file %s cannot be written (%s): the streams run, but will not be started "
                            "again after a restart", self.path, exc.strerror or exc)


def write_json_atomic(path: Path, data, indent: int | None = None) -> None:
    """Write ``data`` as JSON to ``path``, owner-only: a temporary file in the same directory,
    fsync, rename, fsync of the directory (a crash leaves the old file or the new one). Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=indent)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
