"""pytest fixtures for real clips and a real RTSP server.

Load them with ``pytest_plugins = ["tests.support.fixtures"]`` in a test module or in the
top-level ``tests/conftest.py`` (pytest refuses ``pytest_plugins`` in nested conftests), or import
them into a nested conftest: ``from tests.support.fixtures import clip_dir, rtsp_server  # noqa: F401``.
``tests`` must be importable: ``python -m pytest`` from the repository root does that (or
``pythonpath = .`` under ``[tool:pytest]``).

- ``clip_dir`` (session): a directory with the clips in :data:`CLIPS` (name -> make_clip kwargs).
- ``rtsp_packages`` (session): installs/checks the GStreamer RTSP server once.
- ``rtsp_server`` (function): an :class:`RtspServer` looping ``clip_dir / "cat.ts"`` at ``.url``;
  stopped (and reaped) at teardown, so the integration conftest's leak check stays green.
- ``redis_server`` (function): a private :class:`RedisServer` on a free port, stopped at teardown.
- ``rtsp_server_factory`` (function): ``rtsp_server_factory(file=... | pattern=...)`` for more
  servers or other sources, all stopped at teardown.
"""

from __future__ import annotations

import pytest

from tests.support.clips import make_clip
from tests.support.redis import RedisServer
from tests.support.rtsp import RtspServer, ensure_rtsp_packages

CLIPS = {
    "cat.mp4": dict(frames=50, motion="slide"),           # cat slides left -> right, 2 s at 25 fps
    "cat_exit.mp4": dict(frames=50, motion="exit"),       # cat slides out on the right; last frame empty
    "cat.ts": dict(frames=100, motion="slide"),           # MPEG-TS for the RTSP server: a 4 s loop
}


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    for name, kwargs in CLIPS.items():
        make_clip(d / name, **kwargs)
    return d


@pytest.fixture(scope="session")
def rtsp_packages():
    ensure_rtsp_packages()


@pytest.fixture
def rtsp_server_factory(rtsp_packages):
    servers: list[RtspServer] = []

    def factory(**kwargs) -> RtspServer:
        server = RtspServer(**kwargs)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.close()


@pytest.fixture
def rtsp_server(rtsp_server_factory, clip_dir):
    return rtsp_server_factory(file=clip_dir / "cat.ts")


@pytest.fixture
def redis_server():
    with RedisServer() as server:
        yield server
