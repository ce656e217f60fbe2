"""Built-in node types (MegFlow's): one module each. ``BUILTIN_MODULES`` is what the registry loads."""

BUILTIN_MODULES = tuple(f"{__name__}.{m}" for m in ("transform", "bcast", "demux", "dyn_demux", "reorder", "noop",
                                                   "image_server", "bytes_server", "video_server",
                                                   "image_input", "video_input", "visualize",
                                                   "webhook_sink", "mqtt_sink", "redis_stream_sink", "jsonl_sink"))

for _m in BUILTIN_MODULES:
    __import__(_m)
