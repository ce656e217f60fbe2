"""people_counter: how many people each video stream shows, frame by frame, with their boxes live.

One YOLOX detector shared by every stream (:mod:`.detect`), a counter per stream (:mod:`.count`)
that tracks the people it sees, sends one JSON message per frame and the frame with its boxes drawn
to the stream's live view. Config: ``configs/people_counter/video_cpu.toml``; the walk-through:
``docs/guide/detection-app.md``.
"""
