# Two entry points on a fresh machine:
#   make book   set up, execute every chapter at smoke scale, check the claims, build the HTML book
#   make test   set up, lint (ruff) and run the tests
#   make dry-run  set up, run the paper-scale code paths for a couple of steps (CPU minutes, offline)
#   make bench  set up, time every paper-scale stage for a few seconds and project a paper-scale run's time
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: setup test book paper dry-run bench

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt lib/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -r requirements.txt -e lib
	touch $@

test: setup
	$(VENV)/bin/ruff check lib tests notebooks
	$(PY) -m pytest -q tests

book: setup
	$(PY) -m latentcf reproduce all --scale smoke --check
	$(PY) -m latentcf book

paper: setup
	$(PY) -m latentcf reproduce all --scale paper --check

# The CPU dry run leaves out galaxy_leap, hours on a 2-core CPU (book/reproduce.md gives the measurements); the GPU
# workflow dry-runs every chapter.
DRY_RUN_CHAPTERS ?= helix square mnist_diffeo mnist_leap mnist_compare

dry-run: setup
	$(PY) -m latentcf reproduce $(DRY_RUN_CHAPTERS) --scale paper --dry-run --allow-missing-weights --device cpu

# The device the projection is measured on (auto, cpu, cuda, cuda:N, mps); it writes build/bench/<device>.json.
BENCH_DEVICE ?= auto

bench: setup
	$(PY) -m latentcf bench all --device $(BENCH_DEVICE)
