# `make demo` and `make test` work on a fresh machine with Python 3.11+, pip and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install package demo serve test test-lowest lint redis chromium bench reliability wheel

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed; installing Debian's python3-venv"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip

# The demo needs only the package; the development tools (mypy, hypothesis, node, ...) come with
# `make install`, which `make test` runs.
$(BIN)/.package: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(BIN)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@ $(BIN)/.package

package: $(BIN)/.package  ## create .venv with just the package (what `make demo` needs)

install: $(BIN)/.installed  ## create .venv with the package and its dev tools

wheel: package  ## build dist/sipgate_ai_flow-*.whl, to `pip install` elsewhere
	$(BIN)/python -m pip wheel -q --no-deps -w dist .

demo: package  ## serve examples/support_bot.py and call it through the emulator (scripted without a tty)
	$(BIN)/python examples/demo_call.py

serve: package  ## serve examples/support_bot.py on http://127.0.0.1:8080 until Ctrl-C
	$(BIN)/aiflow serve examples/support_bot.py:assistant

redis:  ## the tests start their own redis-server; install Debian's package if it is missing
	@command -v redis-server >/dev/null || { \
	  echo "installing Debian's redis-server for the tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@# Debian starts a system service on install; the tests use their own private server.

chromium:  ## the console's browser tests drive Debian's chromium (Playwright never downloads one)
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

NODE_MODULES := benchmarks/node/node_modules/.package-lock.json

$(NODE_MODULES): benchmarks/node/package-lock.json $(BIN)/.installed
	cd benchmarks/node && ../../$(BIN)/npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: install
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy

# The suite in TEST_WORKERS processes (pytest-xdist): most tests wait on timers, so more
# processes than cores pay off. Many tests also hold the SDK to the service's one-second deadline,
# which a core shared by several workers can miss: a test that fails in the crowd runs once more
# alone, and fails the build only if it fails there too. Tests marked `serial` always run alone.
TEST_WORKERS ?= 4
ALONE := --last-failed --last-failed-no-failures none

test: lint redis chromium $(NODE_MODULES)  ## ruff, mypy --strict, then the test suite (real redis-server, chromium)
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not serial" || { \
	  echo "== the tests that failed, once more, alone =="; $(BIN)/pytest $(ALONE) -m "not serial"; }
	$(BIN)/pytest -m serial

# The oldest versions pyproject.toml allows: .ci/lowest.py pins each direct dependency to its lower
# bound, and the core of the suite runs against them in a venv of its own (about 2 minutes).
LOWEST := .venv-lowest
LOWEST_TESTS := tests/test_protocol.py tests/test_golden.py tests/test_assistant.py tests/test_runtime.py \
	tests/test_server.py tests/test_security.py tests/test_store_contract.py

$(LOWEST)/.installed: pyproject.toml .ci/lowest.py | $(BIN)/python
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install -q --upgrade pip
	$(LOWEST)/bin/python .ci/lowest.py > $(LOWEST)/constraints.txt
	$(LOWEST)/bin/python -m pip install -q -c $(LOWEST)/constraints.txt -e '.[redis,pytest]' hypothesis fastapi pytest-xdist
	@touch $@

test-lowest: $(LOWEST)/.installed redis  ## the core tests against the lowest dependency versions allowed
	$(LOWEST)/bin/python -m pip list --format=freeze | grep -iE '^(pydantic|starlette|uvicorn|websockets|httpx|redis|fastapi)=='
	$(LOWEST)/bin/pytest -q -n $(TEST_WORKERS) $(LOWEST_TESTS) || { \
	  echo "== the tests that failed, once more, alone =="; $(LOWEST)/bin/pytest -q $(ALONE) $(LOWEST_TESTS); }

bench: install redis $(NODE_MODULES)  ## every benchmark against its peers; writes benchmarks/results/
	$(BIN)/python -m benchmarks.run

reliability: install redis  ## fuzzing (10 min of atheris), faults and the 100,000-call soak at full size
	$(BIN)/pytest --full -s tests/test_fuzz.py tests/test_faults.py tests/test_security.py tests/test_soak.py
