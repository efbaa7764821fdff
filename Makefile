# datanas monorepo. Everything runs in the workspace virtualenv .venv, created by `make setup`.
#
#   make demo        install everything, then run a real architecture search on the bundled digits data
#                    (about 2-4 CPU-minutes; it ends decided and prints how to compare the cell with random cells)
#   make test        install everything, then run the whole test suite (incl. the built-wheel check)
#   make lint        ruff check + ruff format --check
#   make build       wheel + sdist of every package into dist/
#
# Variables: PYTHON=python3.11 (interpreter for a new .venv), EXTRAS="mmseg l2l" (optional host stacks).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PKGS := $(notdir $(wildcard packages/*))
DIST := dist

# Pass EXTRAS to the setup script only when the user set it (an empty value means "no extras").
SETUP_ENV := PYTHON="$(PYTHON)" $(if $(filter undefined,$(origin EXTRAS)),,EXTRAS="$(EXTRAS)")

# test-<pkg> (test-core, test-vision, ...) is a pattern rule; pattern rules never apply to .PHONY targets.
.PHONY: setup demo test test-fast lint format build check-dists check-markers clean

setup:
	@$(SETUP_ENV) tools/setup.sh

# The search prints its verdict ('decision: decided search ...', or a warning when it ends undecided) and, as
# 'next:', the command that retrains the derived cell against 5 random cells (README: "What make demo runs").
demo: setup
	$(PY) -m datanas_vision.search
	@echo "make demo: done. The 'decision:' line above is the search's verdict; to check the cell against random cells at equal retraining budget (about 3 CPU-minutes), run the 'next:' command with $(PY)."

# Whole monorepo in one command: the default suite (not slow, not gpu), then the slow tests, which CI must
# still run: every package's wheel built and installed alone in a fresh venv, SIGKILL/fault-injection resume,
# two-rank gloo searches under torchrun, mmengine Runner training, end-to-end CLIs (about 2 min on 2 idle cores).
test: setup
	$(PY) -m pytest -q
	$(PY) -m pytest -q -m slow

test-fast: setup
	$(PY) -m pytest -q

test-%: setup
	$(PY) -m pytest -q packages/datanas-$*

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

build: setup
	$(PY) tools/check_dists.py --build-only --dist $(DIST)

check-dists: setup
	$(PY) tools/check_dists.py --dist $(DIST)

check-markers: setup
	$(PY) tools/check_markers.py

clean:
	rm -rf $(DIST) .pytest_cache .ruff_cache
	find packages tools -name __pycache__ -type d -prune -exec rm -rf {} +
