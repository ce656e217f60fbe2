"""Video benchmark app: VideoServer or VideoInput feeding one counting sink per stream."""
