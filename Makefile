# plait: `make demo` runs the main job on a local control plane; `make test` runs every test.
# Everything is installed by these targets: a virtualenv in .venv, the control-plane binaries
# (built from Go modules, cached in ~/.cache/plait and reused when present).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help install binaries test lint unit demo demo-down bench crds clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed  ## create .venv and install plait with its test tools

crds:  ## regenerate crds/ and the chart CRDs from the models
	$(BIN)/python -m plait._kube.crds crds charts/plait/crds

binaries:  ## build kube-apiserver, kube-controller-manager, kubectl, etcd and helm (cached)
	hack/build-binaries.sh

lint: install  ## ruff and mypy
	$(BIN)/ruff check worker operator tests
	$(BIN)/ruff format --check worker operator tests
	$(BIN)/mypy

test: install binaries lint  ## the whole suite against a real control plane
	$(BIN)/pytest $(PYTEST_ARGS)

unit: install  ## only the tests that need no cluster
	$(BIN)/pytest -m "not cluster" $(PYTEST_ARGS)

clean:  ## remove the virtualenv and caches (not the binary cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
