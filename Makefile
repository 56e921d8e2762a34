# Two entry points for a newcomer: `make run` (local all-in-one with demo data) and `make test`.
# `make run PORT=8001` serves the API on another port (default: $DRIFTLINE_API_PORT, else 8000).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/driftline run --demo$(if $(PORT), --port $(PORT))

test: $(STAMP)
	$(BIN)/ruff check sketches stream api tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/profile_vs_whylogs.py

clean:
	rm -rf $(VENV) .driftline
