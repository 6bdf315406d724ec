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

# Idempotent: the venv is (re)installed only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PYBIN) || $(PY) -m venv $(VENV)
	$(PIP) install -q '.[test]'
	$(PIP) install -q --no-deps grad-cam==1.5.7
	@touch $(STAMP)

# `npm ci` only when the lockfile changes; no install scripts run (none is needed).
$(NPM_STAMP): package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	@touch $(NPM_STAMP)

$(ORT_VENDOR)/.copied: $(NPM_STAMP)
	@mkdir -p $(ORT_VENDOR)
	cp $(addprefix $(ORT_DIST)/,$(ORT_FILES)) $(ORT_VENDOR)/
	@touch $@

# `PORT=8001 make demo`: the server and the printed join links use that port.
PORT ?= 8000
demo: setup
	$(PYBIN) manage.py migrate --noinput
	$(PYBIN) manage.py seed_demo --base-url http://127.0.0.1:$(PORT)
	$(PYBIN) manage.py runserver 127.0.0.1:$(PORT)

test: setup
	$(VENV)/bin/ruff check .
	$(PYBIN) -m pytest -q

# Unit and API tests only: no browser, no live services (PostgreSQL/Redis/Celery), no slow ones.
test-fast: setup
	$(PYBIN) -m pytest -q -m "not browser and not integration and not slow"

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	@for b in bench/*.py; do echo "== $$b"; PYTHONPATH=. $(PYBIN) $$b || exit 1; done

clean:
	rm -rf $(VENV) media .pytest_cache
