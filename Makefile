# Calyx — one entry point for a newcomer.
#   make demo   set up .venv, then run the main job on a real default
#   make test   set up .venv (and the Debian tools the tests use), then run the tests
#   make data   fetch and prepare the development corpora into data/corpora/
#   make bench  run the benchmarks, writing bench/results/*.md
#   make lint   ruff + mypy

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv system-deps test demo data bench lint clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

system-deps:
	@bash scripts/install-system-deps.sh

test: venv system-deps
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/mypy

data: venv
	CALYX_WITH_SOUNDFONT=1 bash scripts/install-system-deps.sh
	$(PY) scripts/fetch_data.py

demo: venv
	CALYX_WITH_SOUNDFONT=1 bash scripts/install-system-deps.sh
	$(PY) scripts/demo.py

bench: venv system-deps data
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
