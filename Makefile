# hoopgw developer commands. `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:

PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
MATURIN := VIRTUAL_ENV=$(VENV) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/maturin
RUST_SOURCES := $(shell find core_rs/src -name '*.rs' 2>/dev/null) Cargo.toml core_rs/Cargo.toml $(wildcard Cargo.lock)
PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=
MASK_BENCH_ARGS ?=
SSH_BENCH_ARGS ?=

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)

# Python dependencies, pinned in pyproject.toml; reinstalled only when it changes.
$(VENV)/.deps-stamp: pyproject.toml scripts/pydeps.py | $(PY)
	$(PY) scripts/pydeps.py --extra dev > $(VENV)/requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q -r $(VENV)/requirements.txt
	touch $@

# The Rust extension hoopgw._core, built by maturin into the source tree (editable install).
# The release build is for this machine's CPU (the masking scanner gains ~50% from AVX2 and wider);
# `make install EXT_RUSTFLAGS=` builds for baseline x86-64. Its own target dir keeps `cargo test`
# and clippy (default flags) from rebuilding everything after it.
EXT_RUSTFLAGS ?= -C target-cpu=native
$(VENV)/.ext-release-stamp: $(VENV)/.deps-stamp $(RUST_SOURCES) pyproject.toml
	RUSTFLAGS="$(EXT_RUSTFLAGS)" CARGO_TARGET_DIR=target/ext-release $(MATURIN) develop --release --quiet
	rm -f $(VENV)/.ext-debug-stamp
	touch $@

$(VENV)/.ext-debug-stamp: $(VENV)/.deps-stamp $(RUST_SOURCES) pyproject.toml
	$(MATURIN) develop --quiet
	rm -f $(VENV)/.ext-release-stamp
	touch $@

.PHONY: install
install: $(VENV)/.ext-release-stamp ## Create .venv with hoopgw and the Rust extension (release build)

.PHONY: build-dev
build-dev: $(VENV)/.ext-debug-stamp ## Rebuild the Rust extension in debug mode (fast compile)

.PHONY: deps
deps: ## Install PostgreSQL, OpenSSH and PgBouncer with apt-get when missing
	@bash scripts/install-deps.sh

.PHONY: format
format: $(VENV)/.deps-stamp ## Format Python (ruff) and Rust (cargo fmt)
	$(PY) -m ruff check --fix-only -q .
	$(PY) -m ruff format .
	cargo fmt --all

.PHONY: lint
lint: $(VENV)/.deps-stamp ## ruff, mypy --strict, stubtest of hoopgw._core, cargo fmt --check, clippy -D warnings
	@ls hoopgw/_core*.so >/dev/null 2>&1 || $(MAKE) --no-print-directory build-dev  # stubtest imports it
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m mypy.stubtest hoopgw._core
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	cargo clippy -p hoopgw-core --all-targets -q --features python -- -D warnings

.PHONY: test
test: deps install lint ## Install what is needed, lint, and run the whole suite (Rust and Python)
	cargo test -p hoopgw-core -q
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

# hyperscan (a contender in bench/mask_bench.py) comes with the dev extras where PyPI has a wheel for it;
# elsewhere mask_bench.py says so and runs without it.
.PHONY: bench
bench: deps install ## Microbenchmarks, the masking engine vs re/Hyperscan, pgbench and ssh/scp end to end
	$(PY) -m pytest bench/ --benchmark-only -o python_files='bench_*.py test_*.py' -p no:cacheprovider \
		|| [ $$? -eq 5 ]  # 5: no benchmark collected
	$(PY) -c 'import hyperscan' 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check \
		"$$($(PY) scripts/pydeps.py --extra dev | grep '^hyperscan')" \
		|| echo "hyperscan could not be installed here; bench/mask_bench.py runs without it"
	$(PY) bench/mask_bench.py $(MASK_BENCH_ARGS)
	$(PY) bench/pg_e2e.py $(BENCH_ARGS)
	$(PY) bench/ssh_e2e.py $(SSH_BENCH_ARGS)

.PHONY: fuzz
fuzz: ## Fuzz the Rust decoders (cargo-fuzz; see core_rs/fuzz/run.sh)
	bash core_rs/fuzz/run.sh

.PHONY: demo
demo: deps install ## Start a throwaway Postgres and sshd with a fake bank and the gateway on them; Ctrl-C stops it
	$(VENV)/bin/hoopgw demo $(DEMO_ARGS)

.PHONY: clean
clean: ## Remove build outputs (keeps .venv)
	cargo clean
	rm -f hoopgw/_core*.so $(VENV)/.ext-*-stamp
	rm -rf .pytest_cache .mypy_cache .ruff_cache
