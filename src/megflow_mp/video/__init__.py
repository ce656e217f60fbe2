"""Video sources: decoding files and live streams off the hub."""
