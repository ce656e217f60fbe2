"""mkdocs hooks: the pages generated from the code at build time.

``<!-- generated: http -->`` in a page becomes every server's routes (from each FastAPI app's
OpenAPI document, :mod:`openapi_pages`), ``<!-- generated: metrics -->`` the table of metrics of
``megflow_mp.observe.catalog``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _pages():
    """:mod:`openapi_pages` beside this file (mkdocs loads hooks by path, not from a package)."""
    path = Path(__file__).resolve().with_name("openapi_pages.py")
    spec = importlib.util.spec_from_file_location("megflow_mp_docs_openapi_pages", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- generated: " not in markdown:
        return markdown
    openapi_pages = _pages()

    if "<!-- generated: http -->" in markdown:
        markdown = markdown.replace("<!-- generated: http -->", openapi_pages.http_markdown())
    if "<!-- generated: metrics -->" in markdown:
        markdown = markdown.replace("<!-- generated: metrics -->", openapi_pages.metrics_markdown())
    return markdown
