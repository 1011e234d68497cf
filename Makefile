# OPG Settlement: every entry point installs what it needs first (idempotent).
#   make test   install, compile, run the whole test suite against a real anvil node
#   make demo   install, start anvil, deploy, run relayer + node + verifier, pay for chats, settle on-chain
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export APE_DATA_FOLDER ?= $(CURDIR)/.cache/ape

STAMP := $(VENV)/.installed
ANVIL := node_modules/.bin/anvil

.PHONY: install test demo lint bench clean

install: $(STAMP) $(ANVIL)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

$(ANVIL): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	@test -x $(ANVIL) && touch $(ANVIL)

test: install
	ape compile --force
	ape test --network ethereum:local:foundry

demo: install
	bash scripts/demo.sh

lint: install
	ruff check offchain scripts tests bench
	mamushi --check -l 120 contracts

bench: install
	ape compile --force
	$(PY) bench/gas.py
	$(PY) bench/relayer.py

clean:
	rm -rf .build .cache var
