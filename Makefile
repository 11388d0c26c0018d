# Shortlist: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DB     ?= data/shortlist.lancedb
DEMO   := data/demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo catalog test lint typecheck unit bench clean

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

# Served latency per stage on the demo catalog, in-process (the scale benchmark is issue #6's).
bench: install catalog
	$(VENV)/bin/shortlist bench --db $(DB) --requests 1000 --out data/bench.json
	$(VENV)/bin/shortlist bench --db $(DB) --requests 1000 --explain --out data/bench-explain.json

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
