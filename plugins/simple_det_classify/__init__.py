"""simple_det_classify: detect objects (YOLOX), crop each box, classify the crops (MobileNetV2).

Nodes, in graph order: ``Detect`` (heavy, shared by every stream) -> ``Crop`` (light, one per
stream) -> ``Classify`` (heavy, shared; dynamic batching with ``batch_recv``) -> ``Describe``
(light, one per stream: one JSON string per frame). Configs in ``configs/simple_det_classify/``:
``video_cpu.toml`` (VideoServer), ``video_test.toml`` (VideoInput), ``image_cpu.toml``
(ImageServer). See README.md next to this file.
"""
