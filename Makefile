# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv and installs the project on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo_out
DEMO_SUBJECTS ?= 120

.PHONY: setup test lint format demo paper paper-tethered bench bazel-test clean

setup: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cpu,test]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: setup
	$(PY) tools/demo.py --output_dir=$(DEMO_DIR) --num_subjects=$(DEMO_SUBJECTS)

# Section 5 of the model issue: the paper's comparison on one synthetic cohort.
paper: setup
	$(PY) tools/demo.py --output_dir=paper_out --num_subjects=150 --epochs=60 \
	    --experiments=multitask,regression_only,isbi2021,classical

# The same with scar that shortens when its surroundings do (looks late).
paper-tethered: setup
	$(PY) tools/demo.py --output_dir=paper_tethered_out --num_subjects=150 --epochs=60 \
	    --experiments=multitask,regression_only,classical --scar_model=tethered

bench: setup
	$(PY) tools/benchmark.py records
	$(PY) tools/benchmark.py train

bazel-test: setup
	bazel test //...

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
