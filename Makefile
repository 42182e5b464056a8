# The two commands of openvrm: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   ?= .demo-vault
HOST   ?= 127.0.0.1
PORT   ?= 8765
MAIL_PORT ?= 2525
# pytest-xdist workers for `make test`: the suite waits on Argon2, PostgreSQL and Chromium as much as it
# computes, so it runs in parallel (`make test TEST_WORKERS=0` runs it in one process).
TEST_WORKERS ?= auto

.PHONY: run test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/vrm --home $(DEMO) demo --if-missing
	OPENVRM_PASSPHRASE="demo vault passphrase" $(BIN)/vrm --home $(DEMO) serve --host $(HOST) --port $(PORT) \
		--demo-vendors --relay --mail-port $(MAIL_PORT) --mail-dns-zone $(DEMO)/demo-dns-zone.json

test: $(VENV)/.dev-installed lint typecheck pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

pytest: $(VENV)/.dev-installed
	$(BIN)/pytest -n $(TEST_WORKERS)

bench: $(VENV)/.run-installed
	$(BIN)/python bench/vault.py

clean:
	rm -rf $(VENV) $(DEMO) .mypy_cache .pytest_cache .ruff_cache
