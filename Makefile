# paymon — the two commands of the quick start are `make demo` and `make test`.
# Every target creates or refreshes .venv first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-stress run once lint bench check-config clean

# (Re)install only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/paymon demo

test: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

# The suite as `make test` runs it, with two CPU hogs on the cores (CI is a busy shared 2-core machine).
# RUNS=N repeats it; extra pytest args via PYTEST_ARGS.
test-stress: $(STAMP)
	PYTHON=$(BIN)/python bash bench/stress_test.sh $(PYTEST_ARGS)

run: $(STAMP)
	$(BIN)/paymon run -c config/monitor.yaml

once: $(STAMP)
	$(BIN)/paymon once -c config/monitor.yaml

check-config: $(STAMP)
	$(BIN)/paymon check-config -c config/monitor.yaml

lint: $(STAMP)
	$(BIN)/ruff check monitor tests bench
	$(BIN)/mypy

bench: $(STAMP)
	@set -e; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
