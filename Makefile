# Two entry points for a fresh machine (Python 3.11, Java 17 and Maven are all it needs):
#   make demo   set up, bring the local stack up and run the main job
#   make test   set up and run the whole test suite against a real broker
# Everything installs into .venv; Kafka's jars land in ~/.m2 on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser-deps postgres-deps demo test lint bench clean down

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing lockgate with its dependencies (first run: ~1-2 min)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar off -e '.[dev,browser,sqlalchemy]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/lockgate demo

# The browser tests drive Debian's Chromium (Playwright's own browser download cannot work
# here). Best-effort: install it when missing and we may (root, or sudo without a password);
# otherwise say so, and those tests skip with that reason.
APT_CHROMIUM := DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

browser-deps:
	@if [ -x /usr/bin/chromium ]; then \
	  echo "==> browser tests: using /usr/bin/chromium"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "==> browser tests: /usr/bin/chromium missing; running: apt-get update && $(APT_CHROMIUM)"; \
	  (apt-get update -q && $(APT_CHROMIUM)) || echo "==> could not install chromium; browser tests will be skipped"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  echo "==> browser tests: /usr/bin/chromium missing; running: sudo apt-get update && sudo $(APT_CHROMIUM)"; \
	  (sudo -n apt-get update -q && sudo -n env $(APT_CHROMIUM)) || echo "==> could not install chromium; browser tests will be skipped"; \
	else \
	  echo "==> browser tests: /usr/bin/chromium missing and not root (no passwordless sudo);"; \
	  echo "    they will be skipped. Install it with: sudo apt-get install -y chromium"; \
	fi

# The guard proxy's tests run a real PostgreSQL server (Debian's postgresql, started as the
# postgres user in a temp dir). Install it when missing and we may (root, or passwordless
# sudo); a failed install fails the set-up rather than silently skipping those tests.
APT_POSTGRES := DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql

postgres-deps:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "==> proxy tests: using $$(ls -d /usr/lib/postgresql/*/bin | tail -1)"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "==> proxy tests: PostgreSQL missing; running: apt-get update && $(APT_POSTGRES)"; \
	  apt-get update -q && $(APT_POSTGRES); \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  echo "==> proxy tests: PostgreSQL missing; running: sudo apt-get update && sudo $(APT_POSTGRES)"; \
	  sudo -n apt-get update -q && sudo -n env $(APT_POSTGRES); \
	else \
	  echo "==> proxy tests: PostgreSQL missing and not root (no passwordless sudo);"; \
	  echo "    they will be skipped. Install it with: sudo apt-get install -y postgresql"; \
	fi

test: install browser-deps postgres-deps
	$(BIN)/python -m pytest --durations=25

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/python bench/codec_bench.py

down: install
	$(BIN)/lockgate down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
