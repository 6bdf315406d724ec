# Intervene: `make demo` runs the platform on its embedded defaults, `make test` runs every test.
PY      ?= python3.11
VENV    := .venv
PYBIN   := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
STAMP   := $(VENV)/.installed
# onnxruntime-web for static/prompting/sam_decoder.js: from the npm registry (package-lock.json), the
# ES module build and its single wasm copied to static/vendor/ (served, never committed).
NPM_STAMP  := node_modules/.installed
ORT_DIST   := node_modules/onnxruntime-web/dist
ORT_VENDOR := static/vendor/onnxruntime-web
ORT_FILES  := ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP) $(ORT_VENDOR)/.copied

# Idempotent: the venv is (re)installed only when pyproject.toml changes. Each step says what
# it does and about how long it takes; pip prints every package as it fetches and installs it.
$(STAMP): pyproject.toml
	@echo "==> setup 1/3: Python virtual environment in $(VENV)/ (a few seconds)"
	@test -x $(PYBIN) || { \
	  $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { \
	    echo "make: Intervene needs Python 3.11 as '$(PY)' (found: $$($(PY) --version 2>&1 | head -n1))."; \
	    echo "      Install it, or name it: make PY=/path/to/python3.11 ..."; exit 1; }; \
	  $(PY) -m venv $(VENV); }
	@echo "==> setup 2/3: Python packages into $(VENV)/ (Django, Celery, torch, ...): about 4 minutes"
	@echo "    and 6.6 GB the first time (mostly torch and its CUDA libraries), seconds when up to date"
	$(PIP) install --progress-bar on '.[test]'
	$(PIP) install -q --no-deps grad-cam==1.5.7
	@touch $(STAMP)

# `npm ci` only when the lockfile changes; no install scripts run (none is needed).
$(NPM_STAMP): package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  echo "make: Intervene needs Node 20 and npm (for onnxruntime-web, the browser decoder)."; exit 1; }
	@echo "==> setup 3/3: onnxruntime-web from npm into node_modules/ (under a minute, 150 MB)"
	npm ci --no-audit --no-fund --ignore-scripts
	@touch $(NPM_STAMP)

$(ORT_VENDOR)/.copied: $(NPM_STAMP)
	@mkdir -p $(ORT_VENDOR)
	cp $(addprefix $(ORT_DIST)/,$(ORT_FILES)) $(ORT_VENDOR)/
	@touch $@

# `PORT=8001 make demo`: the server and the printed join links use that port.
PORT ?= 8000
demo: setup
	@echo "==> demo 1/3: database db.sqlite3 (migrate: a few seconds)"
	$(PYBIN) manage.py migrate --noinput
	@echo "==> demo 2/3: demo data: generated images, studies, participants, their analyses (about a minute)"
	$(PYBIN) manage.py seed_demo --base-url http://127.0.0.1:$(PORT)
	@echo "==> demo 3/3: serving http://127.0.0.1:$(PORT)/ (Ctrl-C stops it)"
	$(PYBIN) manage.py runserver 127.0.0.1:$(PORT)

test: setup
	$(VENV)/bin/ruff check .
	$(PYBIN) -m pytest -q

# Unit and API tests only: no browser, no live services (PostgreSQL/Redis/Celery), no slow ones;
# in TEST_JOBS processes (pytest-xdist; a test file stays in one process).
TEST_JOBS ?= 2
test-fast: setup
	$(PYBIN) -m pytest -q -n $(TEST_JOBS) --dist loadfile -m "not browser and not integration and not slow"

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	@for b in bench/*.py; do echo "== $$b"; PYTHONPATH=. $(PYBIN) $$b || exit 1; done

clean:
	rm -rf $(VENV) media .pytest_cache
