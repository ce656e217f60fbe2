"""batch: ``batch_def`` groups a stream into batches of at most ``batch_size`` messages, waiting at
most ``timeout`` ms after the first one; every message is stamped with the id of its group.

Run: ``megflow-mp run -c configs/batch/batch.toml -p plugins/batch``. The sink prints one line per
message: ``result {"id": i, "group_id": g, "group_size": k}``.
"""
