"""future: ``create_future()`` across processes. The source creates futures and sends their wakers in
messages to the sink node (another worker process), which wakes each with a value computed from the
message; the source waits on both futures of a round with ``join([...])``. Also shows ``sleep``
(the sink delays its wake-ups) and ``yield_now`` (the source lets its other tasks run).

Run: ``megflow-mp run -c configs/future/future.toml -p plugins/future``. The sink prints
``woke {"round": r, "x": x, "value": v}`` per waker, the source ``result {"round": r, "xs": [..],
"values": [..]}`` per round, where ``v = x * x + 1``.
"""
