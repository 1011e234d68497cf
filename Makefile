# OPG Settlement: every entry point installs what it needs first (idempotent).
#   make test   install, compile, run the whole test suite against a real anvil node
#   make demo   install, then the whole system on a local anvil chain with real daemons (relayer, two nodes running
#               the real small model, one cheating, three verifiers), paid chats, settlement, slashing, a summary
#               reconciled with the chain; exits 0 only if it reconciles. Options: make demo DEMO_ARGS="--help"
#   make devnet the same system kept up for `make console`, the opg CLI and the HTTP APIs; Ctrl-C stops it
#   make deploy / make console   deploy to / open `ape console` on the RUNNING chain at OPG_RPC_URL (the one
#               `make devnet` keeps on 127.0.0.1:8545); they refuse if none runs there
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export APE_DATA_FOLDER ?= $(CURDIR)/.cache/ape

STAMP := $(VENV)/.installed
ANVIL := node_modules/.bin/anvil

.PHONY: install test demo devnet deploy console lint bench clean

CHROMIUM := /usr/bin/chromium
PG_INITDB := /usr/lib/postgresql/15/bin/initdb

install: $(STAMP) $(ANVIL) $(CHROMIUM) $(PG_INITDB)

# The browser tests of `opg web` (tests/web) drive Debian's chromium headless through Playwright's Python package
# (pinned in requirements.lock); Playwright never downloads a browser of its own.
$(CHROMIUM):
	@echo "== installing Debian's chromium for the browser tests (apt-get)"
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "make: chromium is missing and this user cannot apt-get install it: run 'apt-get install chromium' as root" >&2; exit 1; fi

# The storage tests run every relayer repository on SQLite and on PostgreSQL: offchain/devkit/postgres.py starts
# a throwaway cluster from Debian's server binaries (no service is enabled; the package's default cluster is unused).
$(PG_INITDB):
	@echo "== installing Debian's PostgreSQL server for the storage tests (apt-get)"
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "make: postgresql is missing and this user cannot apt-get install it: run 'apt-get install postgresql' as root" >&2; exit 1; fi

# llama-cpp-python is built from its sdist with these flags (portable AVX2 kernels, no llava): part of the llama.cpp
# backends' model_id (offchain/backends/llama.py), so keep both in step. First build ~8 min on 2 cores; pip caches it.
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

# pip shows its progress on a terminal and stays quiet in logs (CI, pipes).
PIP_PROGRESS := $(shell test -t 2 && echo --progress-bar=on || echo --quiet)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "== installing the pinned Python packages into $(VENV): the first time takes about 8 minutes on 2 cores,"
	@echo "   most of it building llama-cpp-python from source (pip shows 'Building wheel for llama-cpp-python');"
	@echo "   pip caches the wheel, so later installs take seconds"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
	  $(PY) -m pip install $(PIP_PROGRESS) --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps \
	  $$(sed -n 's/^# no-deps: *//p' requirements.lock)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)
	@echo "== Python packages installed"

$(ANVIL): package.json package-lock.json
	@echo "== installing anvil (Foundry's local chain) from npm into node_modules/"
	npm install --no-audit --no-fund --loglevel=error
	@test -x $(ANVIL) && touch $(ANVIL)

# Two pytest processes: the tests on ape's own test chain (tests/contracts, console, deploy, devkit, property), then
# the end-to-end tests of the daemons, each on private anvil chains: E2E_TESTS names every directory that starts its
# own chains (add new ones here). In one process the contract tests' per-test isolation broke part-way (state leaked
# between tests). The likely cause: ape keeps what it learns about a fixture (its scope, whether it touches the chain)
# by fixture NAME for the whole session (ape/pytest/fixtures.py), and the end-to-end conftests reuse contract fixture
# names with other meanings (`system` is a whole devnet in tests/fuzz and the ape deployment in tests/conftest.py,
# `relayer` a daemon with chain_isolation=False). Each group passes on its own; the second process costs one ape
# start-up (seconds) in a run of many minutes, so it stays.
E2E_TESTS := tests/backends tests/client tests/node tests/operator tests/relayer tests/verifier tests/faults \
	tests/devnet tests/demo tests/seasons tests/newcomer tests/web tests/fuzz tests/sdk tests/schemes tests/cli \
	tests/failover

test: install
	ape compile --force
	ape test --network ethereum:local:foundry --durations=15 $(addprefix --ignore=,$(E2E_TESTS))
	ape test --network ethereum:local:foundry --durations=40 $(E2E_TESTS)

demo: install
	ape compile
	$(PY) scripts/demo.py $(DEMO_ARGS)

devnet: install
	ape compile
	$(PY) scripts/devnet.py $(DEVNET_ARGS)

# ape-config's `host: auto` gives every ape command a private anvil (what `make test` needs); APE_FOUNDRY_HOST points
# ape at the running one instead.
OPG_RPC_URL ?= http://127.0.0.1:8545

deploy: install
	@$(PY) -m offchain.ape_deploy require-chain $(OPG_RPC_URL) "make deploy"
	APE_FOUNDRY_HOST=$(OPG_RPC_URL) ape run deploy --network ethereum:local:foundry

# The console shows its banner (the contracts, their OPG, the helpers) at start, not after the first command
# (offchain/console_banner.py), without pydantic-settings' warning about ape's config.
console: install
	@$(PY) -m offchain.ape_deploy require-chain $(OPG_RPC_URL) "make console"
	APE_FOUNDRY_HOST=$(OPG_RPC_URL) APE_CONSOLE_PLUGINS='["offchain.console_banner"]' \
	  PYTHONWARNINGS="ignore:Field 'import_remapping' has an incomplete definition" \
	  ape console --network ethereum:local:foundry

lint: install
	ruff check offchain scripts tests bench
	mamushi --check -l 120 contracts

bench: install
	ape compile --force
	$(PY) bench/gas.py
	$(PY) bench/relayer.py

clean:
	rm -rf .build .cache var
