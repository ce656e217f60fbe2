"""Frames benchmark app: 1080p BGR frames through source -> Transform -> sink."""
