# plait: `make demo` runs the main job on a local control plane; `make test` runs every test.
# Everything is installed by these targets: a virtualenv in .venv, the binaries (built from Go
# modules), the node's Debian packages and the images (all cached in ~/.cache/plait, reused when
# present).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help install binaries node-deps ui-deps ui-assets images test lint unit demo demo-down bench bench-tracing crds clean

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

binaries:  ## build the control plane, the node's binaries, helm, Prometheus and Jaeger from Go modules (cached)
	hack/build-binaries.sh

node-deps:  ## install containerd, runc, the CNI plugins, iptables, buildah and mmdebstrap (Debian packages, root)
	hack/install-node-deps.sh

ui-deps:  ## install Graphviz (the UI's graphs) and Chromium (its browser tests) from Debian's packages (root)
	hack/install-ui-deps.sh

# The UI's front-end libraries are committed under worker/plait/_ui/static (so that installing plait
# and running CI need no npm); this refreshes them from npm at the versions hack/ui-assets pins.
UI_STATIC := worker/plait/_ui/static
ui-assets:  ## refresh the UI's vendored htmx, htmx-ext-sse and viz.js from npm (versions pinned in hack/ui-assets)
	cd hack/ui-assets && npm ci --ignore-scripts --no-audit --no-fund
	cp hack/ui-assets/node_modules/htmx.org/dist/htmx.min.js $(UI_STATIC)/htmx.min.js
	cp hack/ui-assets/node_modules/htmx.org/LICENSE $(UI_STATIC)/htmx.LICENSE.txt
	cp hack/ui-assets/node_modules/htmx-ext-sse/dist/sse.min.js $(UI_STATIC)/htmx-ext-sse.min.js
	cp hack/ui-assets/node_modules/htmx-ext-sse/LICENSE $(UI_STATIC)/htmx-ext-sse.LICENSE.txt
	# viz.js ships no LICENSE file: viz.LICENSE.txt is kept by hand (update its versions with the pin)
	cp hack/ui-assets/node_modules/@viz-js/viz/dist/viz-global.js $(UI_STATIC)/viz-global.js

images: node-deps binaries  ## build the operator, worker and example images with buildah (cached), as the chart names them
	hack/build-images.sh

lint: install  ## ruff, mypy and the layer contracts (import-linter)
	$(BIN)/ruff check worker operator tests bench examples
	$(BIN)/ruff format --check worker operator tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install binaries images ui-deps lint  ## the whole suite: a real control plane, a real node, the chart's pods
	$(BIN)/pytest $(PYTEST_ARGS)

unit: install  ## only the tests that need no cluster
	$(BIN)/pytest -m "not cluster" $(PYTEST_ARGS)

# The demo: examples/order-instance.yaml (the order-processing workflow of examples/orders.py) on
# the local control plane of `plait dev up`, approved half-way with a signal. Idempotent: a previous
# demo instance is deleted first. State lives in $PLAIT_DEV_DIR (default ~/.local/state/plait/dev).
DEMO_INSTANCE := order-a-1001
DEMO_TIMEOUT ?= 180

demo: install binaries  ## start plait locally (control plane, operator, worker) and run an example order end to end
	$(BIN)/plait dev up
	@set -e; \
	eval "$$($(BIN)/plait dev env)"; export PATH="$(abspath $(BIN)):$$PATH"; \
	if [ -t 1 ]; then bold='\033[1m' plain='\033[0m'; else bold='' plain=''; fi; \
	step() { printf "\n$${bold}==> %s$${plain}\n" "$$*"; }; \
	kubectl delete workflowinstance $(DEMO_INSTANCE) --ignore-not-found --wait=true --timeout=60s >/dev/null; \
	step "kubectl apply -f examples/order-instance.yaml"; \
	kubectl apply -f examples/order-instance.yaml; \
	step "plait get $(DEMO_INSTANCE) --watch   (until it waits for a human's approval)"; \
	plait get $(DEMO_INSTANCE) --watch --until AwaitingSignal --timeout $(DEMO_TIMEOUT); \
	step "plait signal $(DEMO_INSTANCE) approval '{\"approved\": true, \"by\": \"alice\"}'"; \
	plait signal $(DEMO_INSTANCE) approval '{"approved": true, "by": "alice"}'; \
	step "plait get $(DEMO_INSTANCE) --watch"; \
	plait get $(DEMO_INSTANCE) --watch --timeout $(DEMO_TIMEOUT); \
	step "plait get $(DEMO_INSTANCE)"; \
	plait get $(DEMO_INSTANCE); \
	step "plait result $(DEMO_INSTANCE)"; \
	plait result $(DEMO_INSTANCE); \
	step "kubectl get workflowinstances"; \
	kubectl get workflowinstances; \
	step "next: try it yourself"; \
	hint() { printf '  %-52s # %s\n' "$$1" "$$2"; }; \
	hint 'eval "$$($(BIN)/plait dev env)"' 'KUBECONFIG, and kubectl on PATH, for this shell'; \
	hint 'export PATH="$(abspath $(BIN)):$$PATH"' 'plait, and kubectl-plait for `kubectl plait ...`'; \
	hint 'kubectl get wfi,wft,wfsig' 'instances, task attempts, signals'; \
	hint 'kubectl plait get $(DEMO_INSTANCE)' 'the step tree (--watch to follow one)'; \
	hint 'kubectl plait logs $(DEMO_INSTANCE)' 'its Events'; \
	hint 'plait definitions order-processing' 'the workflow graph the worker published'; \
	hint "plait submit nightly-etl '{\"source\": \"s3://x\"}' --wait" 'the other example: a loop, a durable delay'; \
	hint 'make demo-down' 'stop it all; docs/walkthrough.md goes on from here'

demo-down:  ## stop what `make demo` started (control plane, operator, worker); data stays for the next demo
	$(BIN)/plait dev down

bench: install binaries  ## benchmarks: local runner vs sayiir, Kubernetes mode vs the API server's ceiling, tracing's cost
	$(BIN)/python -m bench

bench-tracing: install binaries  ## only the cost of tracing per step: the same run with tracing off and on (a real Jaeger)
	$(BIN)/python -m bench.tracing

clean:  ## remove the virtualenv and caches (not the binary cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
