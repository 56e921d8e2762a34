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
# The same pages in Debian's firefox-esr, driven over WebDriver BiDi by puppeteer-core (npm, downloads no browser).
FIREFOX := /usr/bin/firefox-esr
PUPPETEER_VERSION := 25.16.0
PUPPETEER := $(VENV)/node/.puppeteer-core-$(PUPPETEER_VERSION)
# ClickHouse over verified HTTPS (tests/e2e/test_clickhouse_tls.py): Debian's stunnel terminates TLS in front
# of the test ClickHouse server; the test CA and certificates are made with the openssl CLI.
STUNNEL := /usr/bin/stunnel4
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

$(STUNNEL):
	$(APT) install -y -q --no-upgrade stunnel4 openssl || { $(APT) update -q && $(APT) install -y -q --no-upgrade stunnel4 openssl; }

$(AXE):
	npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error axe-core@$(AXE_VERSION)
	test -f $(VENV)/node/node_modules/axe-core/axe.min.js
	touch $(AXE)

$(FIREFOX):
	$(APT) install -y -q --no-upgrade firefox-esr || { $(APT) update -q && $(APT) install -y -q --no-upgrade firefox-esr; }

$(PUPPETEER):
	npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error puppeteer-core@$(PUPPETEER_VERSION)
	test -f $(VENV)/node/node_modules/puppeteer-core/package.json
	touch $(PUPPETEER)

test: $(STAMP) $(CHROMIUM) $(AXE) $(FIREFOX) $(PUPPETEER) $(STUNNEL)
	$(BIN)/ruff check sketches stream api tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

# Every bench script, then one table of ratios (each figure against its peer or limit in the same run).
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .driftline
