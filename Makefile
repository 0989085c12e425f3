# Two entry points for a fresh machine: `make pipeline` (the default `quick` profile, CPU) and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
CORES  ?= all

.PHONY: install pipeline report test bench
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/lock.txt -e ".[test,bench]"
	touch $@

pipeline: install
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/run.py
