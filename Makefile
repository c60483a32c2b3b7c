# `make demo` and `make test` set up .venv themselves (idempotent; quick when up to date).
PYTHON ?= python3
# Test workers: one per core (at most four); TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= auto
# Workers steal queued tests from each other, so the long end-to-end tests do not leave one
# core idle at the end; each test still runs whole in one worker, with its own ports and files.
PARALLEL := -n $(TEST_WORKERS) --maxprocesses=4 --dist worksteal
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tripwire-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test test-fast lint demo bench vectors schemas clean

$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# constraints.txt pins the CPU torch build for dev/CI; GPU users install their own torch.
	$(BIN)/pip install -q -c constraints.txt -e ".[test,evals,lmeval,inspect,postgres]"
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check protocol node reports tests bench
	$(BIN)/mypy protocol node reports

test: lint
	# Report tests print and inspect pages in headless Chromium (installed if missing).
	bash scripts/ensure-chromium.sh
	# Accessibility tests run axe-core inside the page (fetched once into a cache with npm).
	bash scripts/ensure-axe-core.sh >/dev/null || echo "axe-core could not be fetched: the accessibility tests will skip"
	$(BIN)/pytest -q --durations=25 $(PARALLEL)

test-fast: venv
	$(BIN)/pytest -q -m "not slow" $(PARALLEL)

demo: venv
	# The report is printed to PDF by headless Chromium (installed if missing).
	bash scripts/ensure-chromium.sh
	$(BIN)/tripwire demo $(DEMO_ARGS)

bench: venv
	$(BIN)/python bench/protocol.py

vectors: venv
	$(BIN)/python specs/vectors/generate.py

schemas: venv
	$(BIN)/python specs/schemas/generate.py

clean:
	rm -rf $(VENV) demo-network .pytest_cache .mypy_cache .ruff_cache
