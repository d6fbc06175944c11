# Two entry points: `make demo` and `make test`. Each creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,dp,parquet,torch,node,ray,browser,lattice]'
	touch $@ $(VENV)/.installed-core

demo: $(VENV)/.installed-core
	$(BIN)/isthmus demo

# Compiled here, once: a fresh clone has no compiled modules and, where PYTHONDONTWRITEBYTECODE is set (as on
# this machine), every party, node and CLI process would compile isthmus from source again: 0.7 CPU s each.
test: $(VENV)/.installed-test
	$(BIN)/python -m compileall -q -j 0 src
	$(BIN)/python -m pytest -q -n auto --dist loadgroup --no-loadscope-reorder

bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e '.[bench]'

clean:
	rm -rf $(VENV) runs
