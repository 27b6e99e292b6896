# Phase Zoo: the two commands of the README, and their helpers.
#   make book [PROFILE=mini|smoke|paper] [WORKERS=N] [DEVICE=auto]   the main job
#   make test                                                          the test suite
PYTHON ?= python3
VENV   ?= .venv
PROFILE ?= mini
ROOT   ?= data/zoos
WORKERS ?= 2
DEVICE ?= auto
# extra options of the train, metrics and downstream stages, e.g. "--executor ray --ray-address auto"
RUN_OPTS ?=
# extra options of the train stage only, e.g. "--no-pack" (train the seeds of a cell one by one)
TRAIN_OPTS ?=
ZOOS   ?= digits-resnet18 digits-vit text-gpt convection-pinn
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test book check-book train table bench clean

# Idempotent: the virtual environment is (re)built only when pyproject.toml changes.
# --compile-bytecode: every process of `make book` and `make test` imports torch and its stack;
# without .pyc files (PYTHONDONTWRITEBYTECODE set, a read-only install) each process compiles
# them again: 10.6 s instead of 4.2 s to import the training stack, measured on 2 cores.
setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev,book]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

# Train the default embedded zoos, compute their loss-landscape metrics and run the downstream
# methods (finished work is skipped), printing each zoo's phase map and the wall time of each
# stage; then execute every notebook for these zoos into book/executed/ (papermill) and build
# the Jupyter Book strictly to book/_build/html (phasezoo book).
book: setup
	@for zoo in $(ZOOS); do \
	  start=$$(date +%s); \
	  $(BIN)/phasezoo train $$zoo --profile $(PROFILE) --root $(ROOT) --workers $(WORKERS) --device $(DEVICE) $(RUN_OPTS) $(TRAIN_OPTS) || exit $$?; \
	  mid=$$(date +%s); echo "stage train: $$((mid - start)) s"; \
	  $(BIN)/phasezoo metrics $$zoo --profile $(PROFILE) --root $(ROOT) --workers $(WORKERS) --device $(DEVICE) $(RUN_OPTS) || exit $$?; \
	  echo "stage metrics: $$(( $$(date +%s) - mid )) s"; mid=$$(date +%s); \
	  $(BIN)/phasezoo downstream $$zoo --profile $(PROFILE) --root $(ROOT) --workers $(WORKERS) --device $(DEVICE) $(RUN_OPTS) || exit $$?; \
	  echo "stage downstream: $$(( $$(date +%s) - mid )) s"; \
	  $(BIN)/phasezoo phases $$zoo --profile $(PROFILE) --root $(ROOT) || exit $$?; \
	done
	$(BIN)/phasezoo summary $(ZOOS) --profile $(PROFILE) --root $(ROOT)
	$(BIN)/phasezoo book $(ZOOS) --profile $(PROFILE) --root $(ROOT) --workers $(WORKERS)

# Open the built book's index, comparison and phase pages in headless Chromium (Debian's
# `chromium` and `chromium-driver`, driven by Selenium): fails when a page does not load or an image on it has zero size.
check-book: setup
	$(BIN)/python -m phasezoo.publish.browser book/_build/html --screenshots book/_build/screenshots

bench: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache book/_build book/executed
