# Two entry points for a fresh machine (Python 3.11, Java 17 and Maven are all it needs):
#   make demo   set up, bring the local stack up and run the main job
#   make test   set up and run the whole test suite against a real broker
# Everything installs into .venv; Kafka's jars land in ~/.m2 on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean down

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing lockgate with its dependencies (first run: ~1-2 min)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar off -e '.[dev,browser]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/lockgate demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/codec_bench.py

down: install
	$(BIN)/lockgate down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
