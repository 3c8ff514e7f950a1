# Karl — two commands on a fresh Debian 12 machine:
#   make run    start one media node with in-memory state on the default ports
#   make test   install what the tests need, then lint, type-check and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := redis-server kamailio sip-tester rtpengine-daemon mariadb-server openssl prometheus
APT_GET := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)

.PHONY: run test venv deps-system lint typecheck imports pytest bench bench-quick clean

$(VENV)/.installed: pyproject.toml
	@# Debian ships venv separately (python3-venv); install it when missing and we may.
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq python3-venv python3-pip && \
		$(PYTHON) -m venv $(VENV); } || { echo "cannot create $(VENV): install python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

# A laptop run keeps its call records in ./var (a packaged install uses /var/lib/karl).
run: venv
	KARL_CDR_PATH=$${KARL_CDR_PATH:-$(CURDIR)/var/cdr.jsonl} \
	KARL_CDR_SPOOL_DIR=$${KARL_CDR_SPOOL_DIR:-$(CURDIR)/var/cdr-spool} $(VENV)/bin/karl

deps-system:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $$missing; \
	fi
	@# The packaged daemons must not hold the default ports while the suite runs.
	@-systemctl disable --now rtpengine-daemon kamailio mariadb prometheus prometheus-node-exporter >/dev/null 2>&1 || true

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy core medianode ngrouter operator

imports: venv
	$(VENV)/bin/lint-imports

pytest: venv
	$(VENV)/bin/pytest

test: deps-system venv lint typecheck imports pytest

bench: venv
	$(PY) bench/run.py

bench-quick: venv
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
