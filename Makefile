# Phase Zoo: the two commands of the README, and their helpers.
#   make book [PROFILE=mini|smoke|paper] [WORKERS=N] [DEVICE=auto]   the main job
#   make test                                                          the test suite
PYTHON ?= python3
VENV   ?= .venv
PROFILE ?= mini
ROOT   ?= data/zoos
WORKERS ?= 2
DEVICE ?= auto
ZOOS   ?= digits-resnet18
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test book train table bench clean

# Idempotent: the virtual environment is (re)built only when pyproject.toml changes.
setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

# Train the default embedded zoos (finished members are skipped), then print their tables.
book: setup
	@for zoo in $(ZOOS); do \
	  $(BIN)/phasezoo train $$zoo --profile $(PROFILE) --root $(ROOT) --workers $(WORKERS) --device $(DEVICE) || exit $$?; \
	  $(BIN)/phasezoo table $$zoo --profile $(PROFILE) --root $(ROOT) || exit $$?; \
	done

bench: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
