# Reverie. `make dev` runs the whole system locally; `make test` runs the tests. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
DEV_ARGS ?=

.PHONY: setup dev dev-reset test test-unit lint layer bench bench-report bench-scale bench-coldstart bench-chat bench-reflect bench-recall bench-check bench-vector bench-plans bench-narrative bench-faults screenshots deploy clean

setup: $(STAMP)

# Reinstalls only when a requirements file changes, so a second `make setup` takes no time.
# Three packages: the deployed library (the layer), the Python client, and the development tools.
$(STAMP): pyproject.toml layers/core/requirements.txt client/pyproject.toml dev/pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e . -e ./client -e ./dev -r requirements-dev.txt
	touch $(STAMP)

# Options pass through, e.g. make dev DEV_ARGS="--port 3001 --schedule-rate 60"
dev: setup
	$(BIN)/reverie dev $(DEV_ARGS)

dev-reset:
	rm -rf .reverie

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/cfn-lint template.yaml

# The core layer as Lambda runs it (Python 3.12, arm64), checked, with its size in bench/results/layer.json.
layer: setup
	$(BIN)/python -m reverie_dev.layer

# Every benchmark, then the table of their figures against the targets: bench/results/README.md. Each runs alone too.
bench: bench-chat bench-reflect bench-recall bench-check bench-vector bench-plans bench-narrative bench-faults bench-scale \
		bench-coldstart layer
	$(MAKE) bench-report

bench-report: setup
	$(BIN)/python bench/report.py

# 10k, 100k and 1M memories over 1,000 users and a heavy user of 100k: bench/results/scale.json
bench-scale: setup
	$(BIN)/python bench/scale.py

# Each function's cold import and first invocation, in a fresh process: bench/results/coldstart.json
bench-coldstart: setup
	$(BIN)/python bench/coldstart.py

bench-chat: setup
	$(BIN)/python bench/chat.py

bench-reflect: setup
	$(BIN)/python bench/reflect.py

# LoCoMo evidence recall@k; pass another copy of the data set with LOCOMO=path/to/locomo10.json
LOCOMO ?= ../shared/eval/locomo-dev.json
bench-recall: setup
	$(BIN)/python bench/locomo.py $(LOCOMO)

# How often the cheap check before a reflection call is wrong, against LoCoMo's annotated facts: bench/results/check.json
bench-check: setup
	$(BIN)/python bench/check_eval.py $(LOCOMO)

bench-vector: setup
	$(BIN)/python bench/vector_scan.py

# The hybrid search's kept plan against the statement as text, and its halves apart: bench/results/search_plans.json
bench-plans: setup
	$(BIN)/python bench/search_plans.py

# Narrative reads from the hot copy in Valkey against Postgres: bench/results/narrative.json
bench-narrative: setup
	$(BIN)/python bench/narrative.py

# The memory inspector's screenshots in docs/, taken by its browser tests (Chromium: see .ci/run)
screenshots: setup
	REVERIE_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/e2e/test_inspector_browser.py

# Engines stopped and the model broken for real, scenario by scenario: bench/results/faults.json
bench-faults: setup
	$(BIN)/python bench/faults.py

deploy:
	sam build && sam deploy --guided

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .ruff_cache
