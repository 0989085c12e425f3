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

.PHONY: install pipeline report report-screenshots migrate unlock test bench container container-check
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

# The report as a reader sees it, in headless chromium (Debian: apt-get install chromium):
# results/<profile>/screenshots/landing.png (the answer first) and one PNG per table page.
report-screenshots: report
	$(BIN)/python tests/browser.py $(REPORT) $$(dirname $(REPORT))/screenshots

# After a killed Snakemake (SIGKILL, a closed terminal) the next run stops with "Directory cannot
# be locked": this removes the stale lock. Only when no other Snakemake runs in this directory.
unlock: install
	$(BIN)/snakemake --unlock $(CONFIG)

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/run.py

# --- Containers (README: "In the container") ---
# `make container`: with Apptainer, containers/samedge.sif from containers/samedge.def; otherwise
# the image samedge:VERSION from containers/Dockerfile with podman or docker (containers/build.sh,
# which installs podman where it can). BASE_IMAGE=... builds on another base (default: the recipes').
# `make container-check`: the smoke DAG on the host and in the image, every result compared.
BASE_IMAGE ?=
export BASE_IMAGE
container:
	@if command -v apptainer > /dev/null; then \
	  echo "make container: Apptainer builds $(IMAGE) from containers/samedge.def" >&2; \
	  $(MAKE) --no-print-directory $(IMAGE); \
	else containers/build.sh > /dev/null; fi

container-check: install
	containers/check.sh

# Written under a temporary name and renamed, so a failed build leaves no half image behind.
$(IMAGE): containers/samedge.def containers/entrypoint.sh containers/self-test.sh pyproject.toml requirements/lock.txt $(shell find src/samedge -type f -not -path '*/__pycache__/*')
	apptainer build --force $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) $(IMAGE:.sif=.tmp.sif) containers/samedge.def || { rm -f $(IMAGE:.sif=.tmp.sif); exit 1; }
	mv $(IMAGE:.sif=.tmp.sif) $@
