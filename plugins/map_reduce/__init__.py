"""map_reduce: one output broadcast to two ``map_def`` nodes (a connection with several receivers),
their results gathered by a ``reduce_def`` node over a list port (``sum:inp:0``, ``sum:inp:1``).

Run: ``megflow-mp run -c configs/map_reduce/map_reduce.toml -p plugins/map_reduce``. The sink prints
``result {"x": x, "sum": s}`` per message, with ``s == 1 * x + 2 * x``.
"""
