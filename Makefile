# The front door, from a fresh clone with nothing activated: `make pipeline` (the profile named by
# params.yaml's `profile:`, or PROFILE=smoke|quick|paper) and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
CORES   ?= all
PROFILE ?=
IMAGE   := containers/samedge.sif
# Every Snakemake call gets the same profile, so the report describes the run before it.
# Last on the command line: --config takes every word that follows it.
CONFIG  := $(if $(PROFILE),--config profile=$(PROFILE))
PLOTS_TEMPLATE := .dvc/plots/offline.html

.PHONY: install pipeline report migrate unlock test bench container
install: $(VENV)/.installed $(PLOTS_TEMPLATE)

$(VENV)/.installed: pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/lock.txt -e ".[test,bench]"
	touch $@

# `dvc plots show` renders offline with this template (.dvc/config: plots.html_template).
$(PLOTS_TEMPLATE): .dvc/plots/offline_template.py $(VENV)/.installed
	$(BIN)/python .dvc/plots/offline_template.py $@

# The report lies in the profile's own folder (results/<profile>/report.html; samedge.layout says where).
REPORT = $$($(BIN)/python -m samedge.layout report $(PROFILE))

pipeline: install
	$(BIN)/snakemake --cores $(CORES) $(CONFIG)
	$(BIN)/snakemake --report $(REPORT) $(CONFIG)

report: install
	$(BIN)/snakemake --report $(REPORT) $(CONFIG)

# A workspace of the single-profile layout (results/runs, results/*.csv, ...): its results move
# into the folders of PROFILE (nothing is overwritten; it stops if any is taken) and Snakemake
# records the runs as up to date, so nothing retrains (the next `make pipeline` rebuilds the tables
# and figures): `make migrate PROFILE=quick`.
migrate: install
	$(BIN)/python -m samedge.layout migrate $(PROFILE)
	$(BIN)/snakemake runs --cores 1 --touch --forcerun train $(CONFIG)

# After a killed Snakemake (SIGKILL, a closed terminal) the next run stops with "Directory cannot
# be locked": this removes the stale lock. Only when no other Snakemake runs in this directory.
unlock: install
	$(BIN)/snakemake --unlock $(CONFIG)

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/run.py

# The Apptainer image every job runs in under `snakemake --use-singularity`; written under a
# temporary name and renamed, so a failed build leaves no half image behind.
container: $(IMAGE)

$(IMAGE): containers/samedge.def pyproject.toml requirements/lock.txt $(shell find src/samedge -type f -not -path '*/__pycache__/*')
	$(if $(shell command -v apptainer),,$(error make container: no `apptainer` on PATH; install Apptainer >= 1.0, or build the same image with Docker (docker build -f containers/Dockerfile -t samedge:0.1.0 .)))
	apptainer build --force $(IMAGE:.sif=.tmp.sif) containers/samedge.def || { rm -f $(IMAGE:.sif=.tmp.sif); exit 1; }
	mv $(IMAGE:.sif=.tmp.sif) $@
