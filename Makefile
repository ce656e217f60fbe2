# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON_BASE ?= $(shell ls -d $$(pyenv root 2>/dev/null)/versions/3.10.*/bin/python3.10 2>/dev/null | tail -1)
ifeq ($(PYTHON_BASE),)
PYTHON_BASE := $(shell command -v python3.10 || command -v python3)
endif
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench chaos lint clean models system-deps docs

$(STAMP): setup.cfg pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e . --no-deps
	$(PY) -m pip install -q -e '.[ray]'  # the optional cluster backend (--ray): its tests run too
	touch $(STAMP)

venv: $(STAMP) models system-deps

# Debian packages the tests use, installed when missing (needs root and apt-get):
# graphviz (`dot` draws graphs), redis-server (apps that store features), chromium (Swagger UI checked in a real browser), GStreamer's RTSP
# server (a real RTSP source for the video tests; run by the system python3, which has `gi`)
DEBS := graphviz chromium redis-server mosquitto gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (install them as root)"; fi; fi
	@/usr/bin/python3 tests/support/rtsp_server.py --check >/dev/null 2>&1 || echo "GStreamer RTSP server not usable"

# The shared folder (models and test photos, kept outside the repository): ../shared, else
# $MEGFLOW_MP_SHARED, else the one beside the repository this checkout was cloned from.
ORIGIN := $(shell git config --get remote.origin.url 2>/dev/null)
SHARED := $(firstword $(wildcard $(abspath ../shared) $(MEGFLOW_MP_SHARED) $(if $(ORIGIN),$(abspath $(ORIGIN)/../shared))))
export MEGFLOW_MP_SHARED := $(SHARED)

# models -> <shared>/models when that folder exists
models:
	@if [ ! -e models ] && [ -n "$(SHARED)" ] && [ -d "$(SHARED)/models" ]; then ln -s "$(SHARED)/models" models; fi

# the engine's self-check, then the image classification service until Ctrl-C
DEMO_PORT ?= 8084
DEMO_PHOTO := $(firstword $(wildcard $(SHARED)/data/images/cat_720p.jpg) path/to/photo.jpg)
demo: venv
	$(VENV)/bin/megflow-mp selfcheck
	@echo
	@echo "MobileNetV2 classification service (simple_classification, onnxruntime on the CPU):"
	@echo "  Swagger UI: http://127.0.0.1:$(DEMO_PORT)/docs  (POST /analyze/{extra} -> Try it out -> pick a photo)"
	@echo "  or:  curl -X POST -H 'Content-Type: image/jpeg' --data-binary @$(DEMO_PHOTO) http://127.0.0.1:$(DEMO_PORT)/analyze/my_cat"
	@echo "  Ctrl-C stops it."
	@echo 'port = $(DEMO_PORT)' > $(VENV)/demo-vars.toml
	$(VENV)/bin/megflow-mp run configs/simple_classification/image_cpu.toml --dynamic $(VENV)/demo-vars.toml

test: venv
	$(PY) -m pytest -q tests

# the reliability suite at full size (about 13 minutes): fuzzed HTTP and configs, hostile clients,
# killed processes, cameras, overload, stream churn, redis outages; writes RELIABILITY.md.
# `make test` runs the same code at a small size.
chaos: venv
	MEGFLOW_MP_RELIABILITY=full MEGFLOW_MP_RELIABILITY_REPORT=RELIABILITY.md $(PY) -m pytest -q tests/reliability

# every benchmark next to its baseline, interleaved rounds (about 10 minutes); writes benchmarks/RESULTS.md.
# `make test` runs them once at 2% of their size (tests/integration/test_bench_small.py).
bench: venv
	$(PY) -m pytest -q benchmarks --benchmark-columns=mean,ops --benchmark-sort=name --benchmark-json=.benchmarks/bench.json
	$(PY) benchmarks/report.py .benchmarks/bench.json

# the API reference and guides (mkdocs + mkdocstrings, from the docstrings; offline) into site/
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d site
	@echo "open site/index.html"

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .benchmarks site
