"""electric_bicycle: an alert when a lift camera sees an electric bicycle (COCO: a motorbike or a bicycle).

Nodes, in graph order: ``Detect`` (YOLOX, heavy, shared by every stream) -> ``Track`` (IoU tracker,
one per stream) -> ``Alert`` (one JSON alert per new vehicle track, one per stream) -> ``RedisPush``
(shared: pushes each alert to a redis list and hands it back as the stream's message). Configs in
``configs/electric_bicycle/``: ``video_cpu.toml`` (VideoServer) and ``video_test.toml`` (VideoInput).
See README.md next to this file.
"""
