# The project's two commands: `make demo` (the nightly export DAG in real Airflow against the
# local emulator) and `make test` (every test). Both set up what they need from nothing.
# Extras: `make matrix` runs the tests on every supported Airflow minor (docs/development.md); `make docs`
# builds the documentation site into docs/_build/html.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed

# The newest supported minor: the main venv (`make test`, `make demo`) runs on it.
NEWEST := 3.3
# Every supported minor, oldest first; the oldest is the floor in pyproject.toml.
MATRIX_MINORS ?= 3.1 3.2 3.3
# What CI (.ci/run) runs besides `make test`, which already covers the newest: the oldest minor.
CI_MATRIX_MINORS ?= 3.1
MATRIX_DIR := .matrix
# Each matrix run: every test not marked e2e, then one real `airflow dags test` of the example DAG,
# the connection form in a browser and the installed-wheel checks (the wheel in a fresh venv runs the demo).
BROWSER_TEST := tests/e2e/test_connection_form_browser.py
MATRIX_E2E := tests/e2e/test_nightly_export_dag.py::test_nightly_export_discovers_exports_and_reports[poke-digest] $(BROWSER_TEST) tests/packaging

# Debian packages the tests need besides the Python ones: PostgreSQL and Redis for the Celery deployment
# test (tests/e2e/test_celery_deployment.py), Chromium and its driver for the connection-form browser test
# (tests/e2e/test_connection_form_browser.py). .ci/debian-packages.sh installs the missing ones (root or
# sudo, apt-get); elsewhere it says what to install and those tests skip (under CI=true they fail).
BROWSER_PACKAGES := chromium chromium-driver
DEBIAN_TEST_PACKAGES := postgresql redis-server $(BROWSER_PACKAGES)

.PHONY: demo test unit e2e e2e-celery debian-packages bench lint docs clean matrix ci-matrix constraints
# Keep each matrix venv's stamp (make would delete it as an intermediate file of matrix-MINOR).
.PRECIOUS: $(MATRIX_DIR)/venv-%/.installed

# pip's -c pins Airflow and its dependencies to a set proven to work (constraints/README.md); on a Python
# other than the one the pins were frozen on, only their '# pinned:' fixes apply (constraints/select.py).
$(STAMP): pyproject.toml constraints/airflow-$(NEWEST).txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed (set PYTHON=python3.x)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c "$$($(BIN)/python constraints/select.py $(NEWEST) $(VENV)/pins.txt)" -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m airflow_provider_atlasflex.testing.demo

# The suite is CPU-bound (real Airflow processes): TEST_WORKERS pytest-xdist workers, one per core by
# default (set TEST_WORKERS=0 to run in one process, e.g. to debug with pdb).
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(min(len(os.sched_getaffinity(0)), 4))' 2>/dev/null || echo 2)
# Under parallel load, `airflow dags test --use-executor` sometimes hangs in the LocalExecutor's shutdown
# after its DAG run finished, until the sandbox kills it (returncode=-9): such a test, and only such, runs once more.
PYTEST_WORKERS = -n $(TEST_WORKERS) --dist worksteal --reruns 1 --only-rerun 'returncode=-9'

test: $(STAMP) debian-packages
	$(BIN)/python -m pytest $(PYTEST_WORKERS)

unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_WORKERS) -m "not e2e"

e2e: $(STAMP) debian-packages
	$(BIN)/python -m pytest $(PYTEST_WORKERS) -m e2e

# The nightly DAG on a real CeleryExecutor deployment (PostgreSQL, Redis, api-server, scheduler,
# dag-processor, triggerer, 3 Celery workers), alone: 2 to 2.5 minutes (docs/deployment-celery.md).
# `make test` runs it too; -rP prints its figures (run time, clusters exported, token requests).
e2e-celery: $(STAMP) debian-packages
	$(BIN)/python -m pytest -m celery -rP tests/e2e/test_celery_deployment.py

# A failed install (offline, say) does not stop the target: the tests that need the packages skip,
# or fail under CI=true, saying what is missing.
debian-packages:
	-.ci/debian-packages.sh $(DEBIAN_TEST_PACKAGES)

# Style and types (CI runs it): ruff over the tree, mypy over the package.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The documentation site (Sphinx + MyST, docs/conf.py) into docs/_build/html; CI runs it. Warnings are
# errors (-W, --keep-going lists them all) and -n (nitpicky) fails every reference that resolves nowhere.
# Its tools are the `docs` dependency group of pyproject.toml, installed into the main venv with the same pins.
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -c "$$($(BIN)/python constraints/select.py $(NEWEST) $(VENV)/pins.txt)" --group docs
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf docs/_build/html docs/_build/doctrees
	$(BIN)/python -m sphinx -W --keep-going -n -q -b html -d docs/_build/doctrees docs docs/_build/html
	@echo "Documentation: docs/_build/html/index.html"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# ---- Airflow version matrix -------------------------------------------------------------------
# One venv per minor in .matrix/venv-MINOR, rebuilt only when its constraints or pyproject.toml change.
matrix: $(addprefix matrix-,$(MATRIX_MINORS))

# .ci/run: after `make test` (the newest minor), the oldest; the wheel checks already ran in `make test`.
ci-matrix: MATRIX_E2E := tests/e2e/test_nightly_export_dag.py::test_nightly_export_discovers_exports_and_reports[poke-digest] $(BROWSER_TEST)
ci-matrix: $(addprefix matrix-,$(CI_MATRIX_MINORS))

$(MATRIX_DIR)/venv-%/.installed: constraints/airflow-%.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed (set PYTHON=python3.x)")'
	rm -rf $(MATRIX_DIR)/venv-$*
	$(PYTHON) -m venv $(MATRIX_DIR)/venv-$*
	$(MATRIX_DIR)/venv-$*/bin/python -m pip install --quiet --upgrade pip
	$(MATRIX_DIR)/venv-$*/bin/python -m pip install --quiet -c "$$($(MATRIX_DIR)/venv-$*/bin/python constraints/select.py $* $(MATRIX_DIR)/venv-$*/pins.txt)" -e '.[dev]'
	@touch $@

matrix-%: $(MATRIX_DIR)/venv-%/.installed
	@echo "== Airflow $$($(MATRIX_DIR)/venv-$*/bin/python -c 'import importlib.metadata as m; print(m.version("apache-airflow"))') ($(MATRIX_DIR)/venv-$*)"
	$(MATRIX_DIR)/venv-$*/bin/python -m pytest -p no:cacheprovider $(PYTEST_WORKERS) -m "not e2e" -q
	-.ci/debian-packages.sh $(BROWSER_PACKAGES)
	$(MATRIX_DIR)/venv-$*/bin/python -m pytest -p no:cacheprovider $(PYTEST_WORKERS) -q -m e2e $(MATRIX_E2E)

# Regenerate one minor's pins: make constraints MINOR=3.2 AIRFLOW=3.2.2 (then run make matrix-3.2).
constraints:
	PYTHON=$(PYTHON) constraints/generate.sh $(MINOR) $(AIRFLOW)

clean:
	rm -rf $(VENV) $(MATRIX_DIR) .demo .pytest_cache docs/_build
