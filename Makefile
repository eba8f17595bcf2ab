# The two commands of README.md. Each installs what it needs into .venv first (once; again when pyproject.toml or
# constraints.txt change). PYTHON picks the interpreter that builds the venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gem3d-installed
BUNDLE_RUN := $(PY) -m monai.bundle run

.PHONY: demo test install

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

test: $(STAMP)
	$(PY) -m pytest -q -ra tests
