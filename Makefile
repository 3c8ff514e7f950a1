# Karl — two commands on a fresh Debian 12 machine:
#   make run    start one media node with in-memory state on the default ports
#   make test   install what the tests need, then lint, type-check and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := redis-server kamailio sip-tester rtpengine-daemon mariadb-server openssl prometheus nftables iproute2 procps chromium coturn baresip kamailio-websocket-modules
APT_GET := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)

.PHONY: run fleet test venv venv-test deps-system lint typecheck imports pytest bench bench-quick clean k8s-test-env

# Two installs into one venv: `run` (and `bench`) need only Karl and its dependencies; the checks
# (lint, typecheck, imports, pytest) add the test tools. Each has its own stamp.
define create_venv
	@# Debian ships venv separately (python3-venv); install it when missing and we may.
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq python3-venv python3-pip && \
		$(PYTHON) -m venv $(VENV); } || { echo "cannot create $(VENV): install python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
endef

$(VENV)/.installed-run: pyproject.toml
	$(create_venv)
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml
	$(create_venv)
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

venv: $(VENV)/.installed-run

venv-test: $(VENV)/.installed-test

# A laptop run keeps its call records in ./var (a packaged install uses /var/lib/karl).
# `exec`: the node replaces the recipe's shell, so a signal sent to make's child reaches the node itself.
run: venv
	KARL_CDR_PATH=$${KARL_CDR_PATH:-$(CURDIR)/var/cdr.jsonl} \
	KARL_CDR_SPOOL_DIR=$${KARL_CDR_SPOOL_DIR:-$(CURDIR)/var/cdr-spool} \
	exec $(VENV)/bin/karl

# Three media nodes, the NG router and Redis on this machine (docs/clustering.md); Ctrl-C stops them all.
fleet: venv
	exec deploy/fleet/run.sh

deps-system:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $$missing; \
	fi
	@# JsSIP for the browser test comes from the npm registry: Node.js and npm (Debian's, if none is here)
	@command -v npm >/dev/null 2>&1 || { $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq nodejs npm; }
	@# The packaged daemons must not hold the default ports while the suite runs.
	@-systemctl disable --now rtpengine-daemon kamailio mariadb prometheus prometheus-node-exporter coturn >/dev/null 2>&1 || true

lint: venv-test
	$(VENV)/bin/ruff check .

typecheck: venv-test
	$(VENV)/bin/mypy core medianode ngrouter operator

imports: venv-test
	$(VENV)/bin/lint-imports

# The Kubernetes test control plane (docs/testing-kubernetes.md): kube-apiserver, controller-manager
# and etcd built from Go source and cached in ~/.cache/karl/k8s-test-env; a no-op when cached.
# Status 3 = no Go here: pytest then reports the skip (a failure in CI).
k8s-test-env:
	deploy/k8s-test-env/build.sh || [ $$? -eq 3 ]

pytest: venv-test k8s-test-env
	$(VENV)/bin/pytest

test: deps-system venv-test lint typecheck imports pytest

bench: venv
	$(PY) bench/run.py

bench-quick: venv
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
