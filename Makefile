# Two entry points on a fresh machine:
#   make book   set up, execute every chapter at smoke scale, check the claims, build the HTML book
#   make test   set up, lint (ruff) and run the tests
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: setup test book paper

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
