# Two commands do all set-up on a fresh machine:
#   make demo   installs what the data engine needs and runs it on the bundled sample data
#   make test   installs the test dependencies and runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: demo test test-fast lint format clean browser

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) -U pip

$(VENV)/.demo-installed: $(VENV)/bin/python pyproject.toml requirements/nodeps.txt
	$(PIP) install $(PIP_FLAGS) -e '.[demo]'
	$(PIP) install $(PIP_FLAGS) --no-deps -r requirements/nodeps.txt
	touch $@

$(VENV)/.test-installed: $(VENV)/bin/python pyproject.toml requirements/nodeps.txt
	$(PIP) install $(PIP_FLAGS) -e '.[all,dev]'
	$(PIP) install $(PIP_FLAGS) --no-deps -r requirements/nodeps.txt
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(VENV)/bin/mmat build --config configs/demo.yaml --out out/demo
	@echo "RR (multi-turn, system prompt inside): out/demo/exports/mmat1m/dataset_qa_rr_train_all_RR_sys.jsonl"
	@echo "ORR (one-turn):                        out/demo/exports/mmat1m/dataset_qa_rr_train_all_ORR.jsonl"
	@echo "statistics report:                     out/demo/report.md (and out/demo/report.json)"
	$(VENV)/bin/mmat release examples/release/*.jsonl --out out/demo/release

test: $(VENV)/.test-installed $(if $(wildcard /usr/bin/chromium),,browser)
	$(PY) -m pytest

# The viewer's browser tests drive Debian chromium through Playwright (never `playwright install`).
# `make test` runs this only when /usr/bin/chromium is missing; it needs root (CI runs as root).
browser:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

test-fast: $(VENV)/.test-installed
	$(PY) -m pytest -m "not slow and not heavy"

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

format: $(VENV)/.test-installed
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
