"""simple_classification: MobileNetV2 ImageNet top-k classification of whole images.

Nodes: ``Classify`` (an image in, a JSON string with its top-k labels out) and ``Record`` (appends
each result as a JSON line to a file, for pipeline-level tests). Configs in
``configs/simple_classification/``: ``image_cpu.toml`` (an HTTP image service) and
``image_test.toml`` (every image of some directories, no HTTP). See README.md next to this file.
"""
