"""ImageServer benchmark app: only built-in nodes (ImageServer, Transform); see image_server.toml."""
