# Every target installs what it needs: a fresh clone needs only `make demo` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
# Paths relative to the checkout (recipes run there): make cannot handle targets whose
# path has a space, and the checkout may live in one. PATH gets them absolute.
VENV := .venv
BIN := $(VENV)/bin
NODE_PREFIX := $(VENV)/node
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/$(NODE_PREFIX)/node_modules/.bin:$(PATH)
# pytest selection and extra options, e.g. `make test PYTEST_ARGS="-k flavor -x"`
PYTEST_ARGS ?=
MODE ?= local
DEBIAN_PACKAGES := openssh-server openssh-client iproute2 iptables postgresql-15 procps \
  slurmctld slurmd slurm-client munge wrk

.PHONY: help deps deps-system venv runner node test lint format demo bench docker-engine images kind-images e2e-kind clean

help:
	@echo "make demo                 one hub and a remote Outpost on this machine (one-remote scenario)"
	@echo "make test                 all tests (unit, integration, end-to-end in network namespaces)"
	@echo "make scenario-NAME        bring a scenario up: one-remote remote-local external-tunnel delayed-tunnel"
	@echo "make bench                benchmarks; writes bench/results/latest.json and docs/performance.md"
	@echo "make docker-engine        install Debian's Docker engine and the kind build's packages (root)"
	@echo "make images               build the images of images/ here (Debian base by debootstrap; needs Docker)"
	@echo "make kind-images          build the kind node image, kind, kubectl and helm here (cached; docs/kind.md)"
	@echo "make e2e-kind             end-to-end tests on kind clusters (builds the images first)"
	@echo "make lint                 ruff check and format check, import contracts (lint-imports)"
	@echo "make runner               install the scenario runner (topology, kind subcommands) into .venv"

deps: deps-system venv runner node

# apt-get install $$missing, with a policy-rc.d (unless one exists) that keeps the packages
# from starting their services: the tests and the scenario runner start their own sshd,
# PostgreSQL, munged, slurmctld, slurmd and dockerd.
define apt_install
policy=/usr/sbin/policy-rc.d; added=""; \
if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod 755 $$policy && added=1; fi; \
echo "installing Debian packages:$$missing"; \
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
code=$$?; if [ -n "$$added" ]; then rm -f $$policy; fi; exit $$code
endef

# Debian packages (sshd for the OpenSSH baseline and the Ansible hosts, PostgreSQL for tests,
# iptables for the topology's rules next to Docker's: docs/topology.md; Slurm and MUNGE for
# the delayed-tunnel scenario's cluster: docs/scenarios.md; wrk, a C load generator, for
# the bench's poll-rate figures: docs/performance.md).
deps-system:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)"; exit 0; fi; \
	$(apt_install)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# The scenario runner (`jupyterhub-outpost topology`): its own distribution, not in the
# product's wheel; demo, scenarios, tests, bench and the kind e2e need it.
$(VENV)/.runner-installed: scenario-runner/pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e ./scenario-runner
	touch $@

runner: $(VENV)/.runner-installed

$(NODE_PREFIX)/.installed:
	mkdir -p $(NODE_PREFIX)
	npm install --silent --no-audit --no-fund --prefix $(NODE_PREFIX) configurable-http-proxy@5
	touch $@

node: $(NODE_PREFIX)/.installed

test: deps
	$(BIN)/ruff check core scenario-runner tests bench charts/tools
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -rs $(PYTEST_ARGS)

lint: venv runner
	$(BIN)/ruff check core scenario-runner tests bench charts/tools
	$(BIN)/ruff format --check core scenario-runner tests bench charts/tools
	$(BIN)/lint-imports --no-cache

format: venv
	$(BIN)/ruff format core scenario-runner tests bench
	$(BIN)/ruff check --fix core scenario-runner tests bench

demo: scenario-one-remote

scenario-%: deps
	$(BIN)/jupyterhub-outpost topology up scenarios/$* --mode $(MODE)

# The images the charts run, built here from Debian, PyPI and npm (docs/kind.md).
images: deps docker-engine
	$(BIN)/python -m outpost_scenarios.images $(IMAGES_ARGS)

bench: deps
	$(BIN)/python -m bench

# Kind mode (docs/kind.md). Debian's docker.io conflicts only with Docker Inc.'s packages
# (docker-ce, docker-ce-cli): a docker CLI installed outside dpkg (/usr/local/bin/docker on
# our machines) is no package, stays first on PATH and talks to Debian's dockerd; an
# installed docker-ce-cli is replaced by docker.io's CLI; an installed docker-ce engine
# stops the target (it is not ours to remove). policy-rc.d keeps the package from starting
# a dockerd with its default, firewall-changing settings: the scenario runner starts the
# project's own (`jupyterhub-outpost kind engine start`). The other packages are what the
# node image build takes from Debian (debootstrap, gcc for pause, libseccomp for runc).
KIND_DEBIAN_PACKAGES := docker.io debootstrap gcc libc6-dev libseccomp-dev pkg-config

docker-engine:
	@missing=""; for p in $(KIND_DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)"; exit 1; fi; \
	if dpkg -s docker-ce >/dev/null 2>&1; then \
	  echo "docker.io conflicts with the installed docker-ce (Docker Inc.'s engine); remove it (apt-get remove docker-ce docker-ce-cli) and run make docker-engine again"; exit 1; \
	fi; \
	$(apt_install)

# The kind node image, kind and kubectl, built here from the Go module proxy and Debian, and
# the helm that the Ansible roles' kubernetes.core.helm runs (tests/ansible/kind)
# (cached: a second run reuses everything; starts the project's Docker engine).
kind-images: docker-engine runner
	$(BIN)/jupyterhub-outpost kind images

# The build's report (its time, cold or warm) goes into the run's summary (docs/kind-e2e.md).
KIND_IMAGES_REPORT := run/kind/images-report.json
e2e-kind: deps docker-engine
	rm -f $(KIND_IMAGES_REPORT)
	$(BIN)/jupyterhub-outpost kind images --report $(KIND_IMAGES_REPORT)
	OUTPOST_KIND_IMAGES_REPORT=$(KIND_IMAGES_REPORT) $(BIN)/pytest -rs tests/e2e/kind tests/ansible/kind $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
