"""Markdown of each server's HTTP routes, from the OpenAPI document of its FastAPI app.

The apps are built as the server nodes build them (``build_app()``), without serving: ImageServer
and BytesServer bind a socket on a free port, closed at once (their door's ``close``); VideoServer and the metrics
port bind nothing here. Used by the docs build (``hooks.py``) and its test.
"""

from __future__ import annotations

import json


def server_apps() -> list[tuple[str, str, object]]:
    """``(name, what it is, FastAPI app)`` for each kind of server."""
    from megflow_mp.frontdoor import bind
    from megflow_mp.nodes.bytes_server import BytesServer
    from megflow_mp.nodes.image_server import ImageServer
    from megflow_mp.nodes.video_server import VideoServer
    from megflow_mp.observe.server import MetricsServer

    out = []
    for cls, what in ((ImageServer, "node `ImageServer`: images in, the graph's answer out"),
                      (BytesServer, "node `BytesServer`: bytes in, bytes out")):
        node = cls("server", {"port": 0})
        try:
            out.append((cls.__name__, what, node.build_app()))
        finally:
            node.door.close()
    out.append(("VideoServer", "node `VideoServer`: streams, their messages and live views",
                VideoServer("server", {"port": 0}).build_app()))
    sock = bind("127.0.0.1", 0)
    try:
        out.append(("Metrics port", "`megflow-mp run --metrics-port N`: the whole app's metrics and dashboard",
                    MetricsServer(sock, lambda: None).server.config.app))
    finally:
        sock.close()
    return out


def _cell(text) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def operations(doc: dict) -> list[tuple[str, str, dict]]:
    """``(METHOD, path, operation)`` of an OpenAPI document, in path order."""
    return [(method.upper(), path, op) for path, item in sorted(doc["paths"].items())
            for method, op in item.items() if method in ("get", "post", "put", "delete", "patch")]


def server_page(name: str, what: str, doc: dict) -> str:
    lines = [f"## {name}", "", f"{what}. {_cell(doc.get('info', {}).get('description'))}", "",
             "| route | what | parameters | answers |", "|---|---|---|---|"]
    for method, path, op in operations(doc):
        params = ", ".join(f"`{p['name']}` ({p['in']}{', required' if p.get('required') else ''})"
                           for p in op.get("parameters", []))
        if "requestBody" in op:
            params = ", ".join(filter(None, [params, "body: " + ", ".join(f"`{t}`" for t in
                                                                         op["requestBody"].get("content", {}))]))
        answers = ", ".join(f"{code} {_cell(r.get('description'))}" for code, r in sorted(op.get("responses", {}).items()))
        lines.append(f"| `{method} {path}` | {_cell(op.get('summary'))} | {params or '-'} | {answers} |")
    return "\n".join(lines) + "\n"


def http_markdown() -> str:
    """Every server's routes, one section each."""
    return "\n".join(server_page(name, what, app.openapi()) for name, what, app in server_apps())


def metrics_markdown() -> str:
    from megflow_mp.observe.catalog import markdown_table

    return markdown_table()


if __name__ == "__main__":  # the documents themselves: python docs/tools/openapi_pages.py > openapi.json
    print(json.dumps({name: app.openapi() for name, _, app in server_apps()}, indent=1))
