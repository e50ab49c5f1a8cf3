# Two entry points for a fresh machine: `make repro` (the whole mini pipeline) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: repro test install clean-venv profile bench pipelines

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

# Switch params.yaml to another profile, e.g. `make profile PROFILE=paper` (see profiles/), and drop
# the lock entries of stages the profile does not have (`git checkout params.yaml dvc.lock pipelines` undoes both).
profile: $(STAMP)
	$(BIN)/python -m mmbalance.profiles --base params.yaml --overrides profiles/$(PROFILE).yaml --out params.yaml
	PATH="$(BIN):$$PATH" python -m mmbalance.lockfile --lock dvc.lock pipelines/*/dvc.lock

# Write pipelines/<dataset>/dvc.yaml (each dataset's training stages) from the template, for every
# dataset of params benchmark: after editing pipelines/train.template.yaml or adding a dataset
pipelines: $(STAMP)
	$(BIN)/python -m mmbalance.pipelines --template pipelines/train.template.yaml --params params.yaml --out pipelines

# Throughput benchmarks P1-P5 on synthetic full-size CREMA-D (≤ 10 min on 2 cores) → reports/performance.md
bench: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/run.py --work build/bench --out reports/performance.md
