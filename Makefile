# The commands of this repo. Each creates .venv/ on first use and installs requirements.txt.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= Assets/Data~
# where `make demo` resumes: data, learner-64, gobig-128, gobig-256, onnx, realimage
FROM ?= data
# PUBLISH=1 copies the run's histories to results/ and its plots to readme_images/
PUBLISH ?=
# options of the live server, e.g. ARGS="--precision int8 --port 4300"
ARGS ?=

.PHONY: test demo serve setup clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

demo: setup
	$(PY) -m helpers.demo --data "$(DATA)" --from $(FROM) $(if $(PUBLISH),--publish)

serve: setup
	$(PY) -m helpers.server $(ARGS)

clean-venv:
	rm -rf $(VENV)
