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

# llama-cpp-python is built from its sdist with these flags (portable AVX2 kernels, no llava): part of the llama.cpp
# backends' model_id (offchain/backends/llama.py), so keep both in step. First build ~8 min on 2 cores; pip caches it.
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
	  $(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps \
	  $$(sed -n 's/^# no-deps: *//p' requirements.lock)
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
