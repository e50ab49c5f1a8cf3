# Two entry points for a fresh machine: `make repro` (the whole mini pipeline) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: repro test install clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Stage commands call `python` and `dvc`: put the project's virtualenv first on PATH.
repro: $(STAMP)
	PATH="$(BIN):$$PATH" dvc repro

test: $(STAMP)
	PATH="$(BIN):$$PATH" python -m pytest -q

clean-venv:
	rm -rf $(VENV)
