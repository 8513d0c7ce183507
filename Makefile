# mokuflow: `make run` (set-up + every study's pipeline on embedded defaults; STUDY=x for one)
# and `make test` (set-up + lint + tests).
SHELL := /bin/bash
VENV  ?= .venv
BIN   := $(CURDIR)/$(VENV)/bin
PY    := $(BIN)/python
STAMP := $(VENV)/.installed

# Offline and quiet, stores inside the repo (see ../shared/notes/stack-recipe.md).
export PATH := $(BIN):$(PATH)
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_API_URL ?= http://127.0.0.1:4200/api
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_EXTRA_LOGGERS := mokuflow
export PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW := ignore
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export GIT_PYTHON_REFRESH := quiet

.PHONY: setup run test browser cloak serve stop ui bench clean-stores

setup: $(STAMP)

# torch first, pinned: the local CPU build 2.13.0 satisfies the project's range, so nothing pulls CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev]"
	touch $@

STUDY ?=
STUDIES = $(shell $(PY) -c "from tasks.core.study import studies; print(' '.join(studies()))" 2>/dev/null)

## run: every study's pipeline on embedded defaults (synthetic data, SQLite MLflow, local DVC cache);
##      `make run STUDY=detection` runs one study's stages (dvc repro --glob 'detection-*')
run: setup
ifeq ($(STUDY),)
	$(BIN)/dvc repro
else
	@echo " $(STUDIES) " | grep -q " $(STUDY) " || { echo "make run: unknown STUDY '$(STUDY)' (one of: $(STUDIES))" >&2; exit 2; }
	$(BIN)/dvc repro --glob '$(STUDY)-*'
endif

## test: lint (ruff) + the test suite
test: setup browser
	$(BIN)/ruff check .
	$(BIN)/pytest

## browser: Debian's chromium for the cloak page's browser tests (apt, as root); never fails the build:
##          without it those tests skip and say why (never `playwright install`: it downloads offline-failing builds)
browser:
	@test -x /usr/bin/chromium || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null \
	  && { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; } \
	  || echo "make browser: no /usr/bin/chromium (not root, or apt failed): the browser tests will skip"; }

## cloak: the invisibility cloak as a web page on the registered inpainting champion (127.0.0.1, inpainting.web.port)
cloak: setup
	$(BIN)/mokuflow inpainting web

## serve: local Prefect server + the project's deployments, in the background; returns when ready
serve: setup
	@$(BIN)/prefect server status >/dev/null 2>&1 || $(BIN)/prefect server start --background
	$(BIN)/prefect server status --wait --timeout 120
	$(PY) -m flows.serve start

## stop: stop what `make serve` started
stop:
	-@test -x $(PY) && $(PY) -m flows.serve stop
	-@test -x $(BIN)/prefect && $(BIN)/prefect server stop

## ui: the MLflow UI on the store named by params.yaml mlflow.tracking_uri
ui: setup
	$(BIN)/mlflow ui --backend-store-uri "$$($(PY) -m tasks.core.tracking)" --host 127.0.0.1 --port 5000

## bench: every CPU benchmark in benchmarks/ (numbers go to benchmarks/results/); gpu_* need a GPU
BENCHES = $(filter-out benchmarks/gpu_%,$(sort $(wildcard benchmarks/*.py)))
bench: setup
	@for b in $(BENCHES); do echo "== $$b"; $(PY) $$b || exit $$?; done
