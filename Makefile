# The two commands of README.md. Each installs what it needs into .venv first (once; again when pyproject.toml or
# constraints.txt change). PYTHON picks the interpreter that builds the venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gem3d-installed
BUNDLE_RUN := $(PY) -m monai.bundle run

.PHONY: demo test install serve

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=23"
	$(PY) -m pip install -q -c constraints.txt -e ".[label,test]"
	touch $(STAMP)

# Main job on the embedded default: synthesize volumes for the demo test masks (inference.json builds the demo
# dataset first when it is missing).
demo: $(STAMP)
	$(BUNDLE_RUN) --config_file bundle/configs/inference.json

# The MONAI Label server for 3D Slicer: make serve STUDIES=/path/to/studies [HOST=127.0.0.1 PORT=8000 CONF="--conf k v"].
# MONAI Label's server starts `python` from PATH, so the venv's bin goes first on PATH; its `monailabel` launcher script
# splits quoted arguments (a JSON override) at spaces, so the module is run directly.
STUDIES ?= bundle/data/demo/imagesTs
HOST ?= 127.0.0.1
PORT ?= 8000
CONF ?=
serve: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m monailabel.main start_server --app apps/gem3d --studies "$(STUDIES)" \
		--host $(HOST) --port $(PORT) $(CONF)

test: $(STAMP)
	$(PY) -m black --check -q bundle/scripts apps tests
	$(PY) -m isort --check-only -q bundle/scripts apps tests
	$(PY) -m flake8 bundle/scripts apps tests
	$(PY) -m pytest -q -ra --durations=10 tests
