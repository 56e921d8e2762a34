# Two entry points for a newcomer: `make run` (local all-in-one with demo data) and `make test`.
# `make run PORT=8001` serves the API on another port (default: $DRIFTLINE_API_PORT, else 8000).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The console's browser tests (tests/e2e/test_console.py) drive Debian's Chromium with Playwright's pip
# package (no browser download) and check every page with axe-core from the npm registry.
CHROMIUM := /usr/bin/chromium
AXE_VERSION := 4.11.4
AXE := $(VENV)/node/.axe-core-$(AXE_VERSION)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/driftline run --demo$(if $(PORT), --port $(PORT))

$(CHROMIUM):
	$(APT) install -y -q --no-upgrade chromium || { $(APT) update -q && $(APT) install -y -q --no-upgrade chromium; }

$(AXE):
	npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error axe-core@$(AXE_VERSION)
	test -f $(VENV)/node/node_modules/axe-core/axe.min.js
	touch $(AXE)

test: $(STAMP) $(CHROMIUM) $(AXE)
	$(BIN)/ruff check sketches stream api tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/profile_vs_whylogs.py

clean:
	rm -rf $(VENV) .driftline
