# Shortlist: `make demo` and `make test` do all the set-up on a fresh machine.
# The venv's interpreter: Debian's CPython 3.11 where it can make a venv (package python3.11-venv),
# else python3. Debian builds it with PGO and LTO, as the Docker image's (python:3.11-slim) is; a
# plain source build (pyenv's default) costs about 6% more CPU an answer over HTTP, measured
# (README, Benchmarks at scale). An existing .venv is kept: `make clean install` moves it.
SYSTEM_PYTHON = $(shell /usr/bin/python3.11 -c 'import ensurepip' 2>/dev/null && echo /usr/bin/python3.11)
PYTHON ?= $(or $(SYSTEM_PYTHON),python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DB     ?= data/shortlist.lancedb
DEMO   := data/demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo catalog test lint typecheck unit bench bench-scale clean

install: $(STAMP)

# torch first, pinned to the CPU build on this machine, so sentence-transformers never pulls CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo catalog: generated (no dataset needed), built once.
$(DB)/CURRENT: | $(STAMP)
	test -f $(DEMO)/events.parquet || $(VENV)/bin/shortlist generate --items 5000 --users 1000 --seed 7 --out $(DEMO)
	$(VENV)/bin/shortlist build --source $(DEMO) --format generic --db $(DB)

catalog: $(DB)/CURRENT

demo: install catalog
	$(VENV)/bin/shortlist serve --db $(DB)

# Served latency per stage on the demo catalog, in-process.
bench: install catalog
	$(VENV)/bin/shortlist bench --db $(DB) --requests 1000 --out data/bench.json
	$(VENV)/bin/shortlist bench --db $(DB) --requests 1000 --explain --out data/bench-explain.json

# The scale benchmark: generate and build SCALE_ITEMS items (once, under SCALE_WORK), then
# per-stage latency, ANN recall against exact search, HTTP load with wrk, build time, peak RSS.
SCALE_ITEMS ?= 1000000
SCALE_USERS ?= 100000
SCALE_WORK  ?= data/scale-$(SCALE_ITEMS)
bench-scale: install
	$(VENV)/bin/shortlist bench --scale --items $(SCALE_ITEMS) --users $(SCALE_USERS) \
		--work $(SCALE_WORK) --report-dir $(SCALE_WORK)/report --requests 1000

lint: install
	$(VENV)/bin/ruff check app schema pipelines tests
	$(VENV)/bin/ruff format --check app schema pipelines tests

typecheck: install
	$(VENV)/bin/mypy

unit: install
	$(PY) -m pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
