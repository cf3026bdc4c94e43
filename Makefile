# The two commands of this project: `make demo` and `make test`. Both create .venv and install
# into it, so a fresh machine needs only Python 3.11+ and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate setup.cfg setup.py
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,embedded]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/metriport-inbox demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

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
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
