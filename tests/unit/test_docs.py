"""The documentation site (mkdocs.yml, docs/): its runnable examples run, its generated pages hold
every route and metric, the guide's code is the shipped app's, and the site builds offline."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUN_MARK = "<!-- run -->"


def runnable_blocks() -> list[tuple[str, str]]:
    """``(page:line, code)`` of every fenced python block right after a ``<!-- run -->`` line."""
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() != RUN_MARK:
                continue
            assert lines[i + 1].strip() == "```python", f"{page}:{i + 1}: {RUN_MARK} must precede a ```python block"
            end = lines.index("```", i + 2)
            out.append((f"{page.relative_to(ROOT)}:{i + 2}", "\n".join(lines[i + 2:end]) + "\n"))
    return out


BLOCKS = runnable_blocks()


def test_every_page_with_examples_has_some():
    pages = {where.split(":")[0] for where, _ in BLOCKS}
    assert {"docs/index.md", "docs/guide/detection-app.md", "docs/api/plugins.md", "docs/api/envelope.md",
            "docs/api/graph.md", "docs/api/models.md", "docs/api/overlay.md"} <= pages


@pytest.mark.parametrize("where,code", BLOCKS, ids=[w for w, _ in BLOCKS])
def test_a_runnable_example_runs(where, code, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, f"{where}:\n{done.stderr}"


def test_the_guide_includes_the_shipped_people_counter():
    page = (DOCS / "guide" / "detection-app.md").read_text()
    included = re.findall(r'^--8<-- "([^"]+)"$', page, re.M)
    assert included == ["plugins/people_counter/detect.py", "plugins/people_counter/count.py",
                        "configs/people_counter/video_cpu.toml"]
    assert all((ROOT / p).is_file() for p in included)


def _pages():
    spec = importlib.util.spec_from_file_location("docs_openapi_pages", DOCS / "tools" / "openapi_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_http_page_lists_every_route_of_every_server():
    pages = _pages()
    text = pages.http_markdown()
    apps = pages.server_apps()
    assert [name for name, _, _ in apps] == ["ImageServer", "BytesServer", "VideoServer", "Metrics port"]
    for name, _, app in apps:
        for method, path, _ in pages.operations(app.openapi()):
            assert f"`{method} {path}`" in text, (name, method, path)
    assert "`GET /view/{sid}/live.mp4`" in text and "410 the stream has ended" in text


def test_the_metrics_page_lists_every_metric():
    from megflow_mp.observe.catalog import METRICS

    text = _pages().metrics_markdown()
    assert all(m.name in text for m in METRICS)


@pytest.mark.slow
def test_the_site_builds_offline_and_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    guide = (site / "guide" / "detection-app" / "index.html").read_text()
    for text in ("CountPeople", "DetectPeople", "draw_boxes", "IouTracker", "Visualize", "allow_dirs"):
        assert text in guide, text  # the included files, highlighted
    models = (site / "api" / "models" / "index.html").read_text()
    for name in ("Detector", "Classifier", "Embedder", "IouTracker", "detect_batch"):
        assert name in models, name
    assert "register" in (site / "api" / "plugins" / "index.html").read_text()
    assert "run_node" in (site / "api" / "testing" / "index.html").read_text()
    assert "/view/{sid}/live.mp4" in (site / "http" / "index.html").read_text()
    assert "megflow_node_envelopes_in" in (site / "metrics" / "index.html").read_text()
    assert "ImageServer" in (site / "nodes" / "index.html").read_text()
    for page in site.rglob("*.html"):  # offline: no script, image, font or stylesheet from another host
        assert not re.search(r'(src="|<link[^>]*href=")https?://', page.read_text()), page
