# Intervene: `make demo` runs the platform on its embedded defaults, `make test` runs every test.
PY      ?= python3.11
VENV    := .venv
PYBIN   := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
STAMP   := $(VENV)/.installed

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP)

# Idempotent: the venv is (re)installed only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PYBIN) || $(PY) -m venv $(VENV)
	$(PIP) install -q '.[test]'
	$(PIP) install -q --no-deps grad-cam==1.5.7
	@touch $(STAMP)

demo: setup
	$(PYBIN) manage.py migrate --noinput
	$(PYBIN) manage.py seed_demo
	$(PYBIN) manage.py runserver 127.0.0.1:8000

test: setup
	$(VENV)/bin/ruff check .
	$(PYBIN) -m pytest -q

# Unit and API tests only: no browser, no live services (PostgreSQL/Redis/Celery), no slow ones.
test-fast: setup
	$(PYBIN) -m pytest -q -m "not browser and not integration and not slow"

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PYBIN) $$b || exit 1; done

clean:
	rm -rf $(VENV) media .pytest_cache
