# Two commands do all the set-up on a fresh machine (see README):
#   make run    - the main job end to end on the offline synthetic dataset
#   make test   - lint + the whole test suite (what CI runs)
# The virtualenv is created and installed on first use; it is rebuilt when the
# dependency pins change.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip
# torch is pinned apart because a bare "torch" requirement pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: install run test test-fast lint mlflow lock clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c requirements/constraints.txt $(TORCH)
	$(PIP) install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/two-tower train data=synthetic

test: $(STAMP) lint
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pre-commit run --all-files --show-diff-on-failure

# A tracking server with a local SQLite backend at the default tracking URI.
mlflow: $(STAMP)
	$(BIN)/mlflow server --host 127.0.0.1 --port 8080 \
		--backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlartifacts

# Re-resolve the pins from pyproject.toml in a throwaway venv.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet $(TORCH) -e ".[dev]"
	{ echo "# Exact versions for the install step (pip install -c requirements/constraints.txt ...)."; \
	  echo "# Regenerate with: make lock"; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > requirements/constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) data/processed artifacts plots mlruns outputs
