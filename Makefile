# Postoffice: `make run` sets everything up and starts the server; `make test` sets up and runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= data
DOMAIN ?= example.test
# Standard ports when root; otherwise every port + 10000 (10025, 10587, ...).
PORT_OFFSET ?= $(shell [ "$$(id -u)" = 0 ] && echo 0 || echo 10000)
# Debian packages the interop tests drive (installed idempotently when missing; needs root or sudo-less apt).
DEBIAN_PACKAGES := swaks strace fetchmail getmail6 curl isync neomutt offlineimap3 msmtp s-nail chromium fonts-noto-cjk \
	libmail-dkim-perl opendkim-tools unbound nsd ldnsutils openssl gsasl sieve-connect rspamd redis-server

.PHONY: runtime install deps run test test-unit test-integration lint config-doc bench clean

# `make run` needs only the server's own dependencies; the test tools come with `make test` (or `make install`).
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime pyproject.toml
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

runtime: $(VENV)/.runtime

install: $(VENV)/.installed

deps:
	@missing=""; for pkg in $(DEBIAN_PACKAGES); do \
		dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(DATA)/postoffice.toml: | runtime
	$(BIN)/postoffice init --data-dir $(DATA) --domain $(DOMAIN) --hostname localhost \
		--address 127.0.0.1 --port-offset $(PORT_OFFSET) --demo-user demo --no-hint

run: runtime $(DATA)/postoffice.toml
	$(BIN)/postoffice --config $(DATA)/postoffice.toml ports
	$(BIN)/postoffice --config $(DATA)/postoffice.toml run

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# The tables of docs/configuration.md come from the setting declarations (docs/decisions/0033).
config-doc: install
	$(BIN)/python -m postoffice.config_doc docs/configuration.md

# Both cores: pytest-xdist; tests of one module stay on one worker so module-scoped servers start once.
XDIST ?= -n auto --dist loadscope

test-unit: install
	$(BIN)/pytest -q $(XDIST) tests --ignore=tests/integration --ignore=tests/interop --ignore=tests/web

test-integration: install deps
	$(BIN)/pytest -q $(XDIST) tests/integration tests/interop tests/web

test: lint test-unit test-integration

bench: install deps
	$(BIN)/python bench/smtp_load.py
	$(BIN)/python bench/submission_load.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
