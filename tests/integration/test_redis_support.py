"""The test redis-server: starts on a free port, stores and answers, is gone after stop."""

from tests.support.fixtures import redis_server  # noqa: F401


def test_redis_server_stores_and_stops(redis_server):  # noqa: F811
    r = redis_server.client()
    r.rpush("k", "a", "b")
    assert r.lrange("k", 0, -1) == ["a", "b"]
    proc = redis_server.proc
    redis_server.stop()
    assert proc.poll() is not None
