# hoinghi: `make run` starts a demo node, `make demo-nodes` three linked ones, `make test`
# runs every check. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOINGHI := $(BIN)/hoinghi
CHROMIUM ?= /usr/bin/chromium

.PHONY: run demo-nodes test lint types pytest setup setup-test netshape-tools clean

run: $(VENV)/.run-installed node_modules/.installed
	$(HOINGHI) migrate
	$(HOINGHI) demo
	$(HOINGHI) serve

# A province node and two district nodes on ports 8080-8082 (data under var/nodes/).
demo-nodes: $(VENV)/.run-installed node_modules/.installed
	$(HOINGHI) demo --nodes 3

setup: $(VENV)/.run-installed node_modules/.installed
setup-test: $(VENV)/.test-installed node_modules/.installed chromium netshape-tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Browser tests drive Debian's chromium (no browser download); install it when missing.
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing: run 'sudo apt-get install chromium'"; exit 1; \
	  fi; \
	fi

# Shaped-link tests (tests/netshape.py) build namespaces with ip/tc (iproute2) and drop
# packets with nft (nftables); install them when missing. They need root, so without root
# a missing tool is only a note: those tests skip (or fail with HOINGHI_REQUIRE_SERVICES=1).
netshape-tools:
	@export PATH="$$PATH:/usr/sbin:/sbin"; \
	if ! command -v nft >/dev/null || ! command -v ip >/dev/null || ! command -v tc >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2 >/dev/null; \
	  else \
	    echo "note: nft/ip/tc missing ('sudo apt-get install nftables iproute2'): shaped-link tests will skip"; \
	  fi; \
	fi

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(VENV)/.test-installed
	$(BIN)/mypy

pytest: setup-test
	$(BIN)/pytest

test: setup-test lint types pytest

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache test-output
