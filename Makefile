# Every target sets up what it needs; a fresh clone needs no other step.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONTROLPLANE := $(BIN)/python -m e2e.controlplane

IMAGE ?= falco-operator:0.1.0
CONTAINER_ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)

.PHONY: bench image e2e e2e-local realnode-build install lint test demo system-deps controlplane controlplane-build cosign-build controlplane-down controlplane-status clean \
	manifests manifests-check pod-template-schema falco-check

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: manifests-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## system-deps: the Debian packages demo and test need (scripts/system-deps.sh: installs them as root, otherwise
## prints the command to run)
system-deps:
	scripts/system-deps.sh

## test: lint, then every test: unit and integration against the local control plane, then (as root) the real-pod
## scenarios on a real kubelet node (make e2e-local)
test: system-deps lint controlplane-build cosign-build falco-check
	$(BIN)/pytest
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory e2e-local; else \
	  echo "make test: the real-node scenarios need root and did not run: sudo make e2e-local" >&2; fi

## falco-check: print the Falco the tests use and validate the default rules with it
falco-check: install
	$(BIN)/python -m e2e.falco check

## controlplane-build: build (or reuse cached) kube-apiserver, controller-manager, scheduler, kubectl, etcd
controlplane-build: install
	$(CONTROLPLANE) build

## cosign-build: build (or reuse cached) the real cosign the signature tests sign with (e2e/cosign.py: go install
## from the Go module proxy into the control plane's cache; about 3 minutes cold on 2 vCPUs, nothing once cached)
cosign-build: install
	$(BIN)/python -m e2e.cosign

## controlplane: start the local control plane with three simulated nodes, in the background
controlplane: controlplane-build
	$(CONTROLPLANE) up

controlplane-down: install
	$(CONTROLPLANE) down

controlplane-status: install
	$(CONTROLPLANE) status

## demo: the whole product locally: control plane, operator, agents and real Falco on 3 nodes, a registry,
## every seed example checked; stays up (Ctrl-C stops everything). ONCE=1: check that an edit shows up live, then
## stop, exit 0 only when every check passed (CI)
demo: system-deps controlplane-build
	$(BIN)/python -m e2e.demo $(if $(ONCE),--once)

## bench: every benchmark under bench/, printing its table (QUICK=1 for smaller sizes)
bench: controlplane-build
	$(BIN)/python -m bench $(if $(QUICK),--quick)

## image: build the operator and agent image (docker or podman); PYTHON_IMAGE=<image> replaces the python:3.11-slim base
image:
	@if [ -z "$(CONTAINER_ENGINE)" ]; then \
	  echo "make image needs docker or podman, and neither is installed (set CONTAINER_ENGINE to another)" >&2; \
	  exit 1; fi
	$(CONTAINER_ENGINE) build $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) -t $(IMAGE) -f Containerfile .

## realnode-build: build (or reuse cached) kubelet, kube-proxy, containerd, runc, CNI plugins and the node's images
## (a Debian base, the product image from the Containerfile with podman, a Falco test image); root
realnode-build: system-deps controlplane-build
	$(BIN)/python -m e2e.realnode.build
	$(BIN)/python -m e2e.realnode.images

## e2e-local: the real-pod scenarios (tests/e2e) on a real kubelet node joined to the local control plane; root
e2e-local: realnode-build falco-check
	$(BIN)/pytest tests/e2e --cluster=local

## e2e: the real-pod scenarios (tests/e2e) on a kind cluster with real Falco (needs kind and docker or podman)
e2e: install
	$(BIN)/python -m e2e.kind --image $(IMAGE) $(if $(KEEP),--keep)

clean: controlplane-down
	rm -rf $(VENV) .venv-runtime build .pytest_cache .mypy_cache .ruff_cache *.egg-info

## manifests: regenerate manifests/crd from the API models (no cluster, no network)
manifests: install
	$(BIN)/python -m falco_operator.manifests

## manifests-check: fail when the committed manifests differ from what the models give
manifests-check: install
	$(BIN)/python -m falco_operator.manifests --check

## pod-template-schema: refresh the PodTemplateSpec schema snapshot from the pinned control plane's OpenAPI
pod-template-schema: controlplane-build
	$(BIN)/python -m e2e.controlplane --dir .controlplane-schema up --node schema-node
	$(BIN)/python -m e2e.pod_template_schema --kubeconfig .controlplane-schema/admin.kubeconfig; \
	  status=$$?; $(BIN)/python -m e2e.controlplane --dir .controlplane-schema down; exit $$status
