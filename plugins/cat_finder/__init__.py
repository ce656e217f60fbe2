"""cat_finder (the "cat fence"): register cats from photos, then watch video streams and send a
notification when a registered cat leaves the frame.

Registration (``configs/cat_finder/image_cpu.toml``, or ``image_test.toml`` over a directory):
Detect -> BestBox -> Reid -> RedisProxy(mode="save"). Fence (``video_cpu.toml``, or ``video_test.toml``
over files): Detect (shared) -> Track -> Shaper -> Reid (shared) -> RedisProxy(mode="search", shared).
See README.md.
"""
