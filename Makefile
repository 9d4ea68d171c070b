# Sonar + mine. `make test` and `make demo` do all set-up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SOLC_VERSION := 0.8.28
ANVIL_BIN := $(CURDIR)/node_modules/@foundry-rs/anvil-linux-amd64/bin
# slither in its own venv (its pins clash with eth-brownie's), from PyPI with pip
LINT_VENV := .venv-lint
SLITHER_VERSION := 0.11.6
# random steps of the stateful property test in `make fuzz` (`make test` runs a short profile)
FUZZ_STEPS := 10000
# client-test processes (pytest-xdist, which eth-brownie installs): each starts its own anvil and IPFS
# node on free ports and runs whole files, so module fixtures are built once (`make test-mine TEST_WORKERS=0`: one process)
TEST_WORKERS ?= 2

# the real anvil binary first (not npm's node wrapper), then npm tools, then the venv
export PATH := $(ANVIL_BIN):$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export SOLCX_BINARY_PATH := $(CURDIR)/.solcx

.PHONY: setup installs test-installs chromium test test-contracts test-ganache test-mine lint fuzz demo bench gas clean

setup: installs .solcx/solc-v$(SOLC_VERSION) build/.compiled chromium

# the package installs are independent of each other: they run side by side (`make test` adds slither's venv)
INSTALLS := $(VENV)/.installed node_modules/.installed
installs:
	@$(MAKE) --no-print-directory -j $(INSTALLS)

test-installs:
	@$(MAKE) --no-print-directory -j $(INSTALLS) $(LINT_VENV)/.installed

# Debian's chromium for the page's browser tests and demo-out/ui.png (Playwright drives it; no browser download)
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "error: chromium is missing; install it as root: apt-get install -y chromium (needed by the page tests and demo-out/ui.png)" >&2; exit 1; fi

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# `npm install` with the committed lockfile (`npm ci` trips over an optional GitHub-hosted dependency)
node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	test -x $(ANVIL_BIN)/anvil
	touch $@

# where py-solc-x and brownie look for solc (SOLCX_BINARY_PATH): a wrapper around tools/solc.js
.solcx/solc-v$(SOLC_VERSION): tools/solc.js node_modules/.installed
	mkdir -p .solcx
	printf '#!/bin/sh\nexec node "%s/tools/solc.js" "$$@"\n' "$(CURDIR)" > $@
	chmod +x $@
	$@ --version | grep -q "Version: $(SOLC_VERSION)"

build/.compiled: $(VENV)/.installed .solcx/solc-v$(SOLC_VERSION) $(wildcard contracts/*.sol contracts/*/*.sol) brownie-config.yaml
	$(VENV)/bin/brownie compile
	touch $@

test: test-installs setup lint test-contracts test-mine

$(LINT_VENV)/.installed:
	python3 -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet "slither-analyzer==$(SLITHER_VERSION)"
	touch $@

# static analysis of Sonar in plain solc mode (the project's solc shim, OpenZeppelin from npm), compiled
# as brownie-config.yaml compiles it (optimizer, 10,000 runs, shanghai);
# fails on any High or Medium finding. Findings in dependencies are filtered out; every accepted
# Low/Informational one in Sonar is justified where it is (// slither-disable-next-line DETECTOR).
lint: $(LINT_VENV)/.installed .solcx/solc-v$(SOLC_VERSION) node_modules/.installed
	$(LINT_VENV)/bin/slither contracts/Sonar.sol --compile-force-framework solc \
		--solc .solcx/solc-v$(SOLC_VERSION) --solc-remaps "@openzeppelin/=node_modules/@openzeppelin/" \
		--solc-args "--optimize --optimize-runs 10000 --evm-version shanghai" \
		--filter-paths node_modules --fail-medium

# the stateful property test, run again and again until FUZZ_STEPS random steps have been checked
fuzz: setup
	SONAR_FUZZ_STEPS=$(FUZZ_STEPS) $(VENV)/bin/brownie test tests/contracts/test_stateful.py --network development -s

# contract tests: brownie starts (and stops) anvil itself for `development`
test-contracts: setup
	$(VENV)/bin/brownie test tests/contracts --network development

# the same contract suite on ganache 7.9.2
test-ganache: setup
	$(VENV)/bin/brownie test tests/contracts --network ganache-cli

# client tests: fixtures start anvil and an IPFS node on free loopback ports and stop them; the 10 slowest are listed
test-mine: setup
	$(PY) -m pytest -p no:pytest-brownie -q -n $(TEST_WORKERS) --dist loadfile --durations=10 tests/mine

# the main job: local anvil + brownie deployment + `mine demo` (ARGS="--dataset diabetes" to vary)
demo: setup
	bash scripts/run_demo.sh $(ARGS)

gas: setup
	$(VENV)/bin/brownie run scripts/gas_table.py --network development

# Flower's own strategies for the bench's comparison, in their own venv (flwr's pins clash with brownie's)
FLOWER_VENV := .venv-flower
$(FLOWER_VENV)/.installed: bench/requirements-flower.txt
	python3 -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/pip install --quiet -r bench/requirements-flower.txt
	$(FLOWER_VENV)/bin/python -c "import flwr, torch; print('flwr', flwr.__version__, 'torch', torch.__version__)"
	touch $@

bench: setup $(FLOWER_VENV)/.installed
	BENCH_FLWR_VENV=$(CURDIR)/$(FLOWER_VENV) $(PY) -m bench.run

clean:
	rm -rf build .solcx demo-out reports .hypothesis $(LINT_VENV) $(FLOWER_VENV)
