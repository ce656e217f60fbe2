"""Chain benchmark app: source -> 3 Python pass-through nodes -> sink, 5 worker processes."""
