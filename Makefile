# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv and installs the project on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo_out
DEMO_SUBJECTS ?= 120

.PHONY: setup test lint format demo paper paper-default paper-tethered bench bazel-test clean

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

# The paper's comparison, cross-validated by subject (docs/fidelity.md):
# synthesize a cohort, convert it, FOLDS-fold cross-validation of every
# experiment in EXPERIMENTS, then paired comparisons with bootstrap CIs.
# `make paper` does the default and the tethered-scar cohorts;
# `make paper-default` / `make paper-tethered` one of them. Each prints its
# expected time before training (hours on a small CPU); a rerun skips
# finished folds. E.g. `make paper-tethered FOLDS=3 PAPER_ARGS=--epochs=20`.
FOLDS ?= 5
EXPERIMENTS ?= multitask,regression_only,xing2023,xing2023_regression_only,isbi2021,classical
PAPER_SUBJECTS ?= 150
PAPER_ARGS ?=
# The pairs compared besides the first experiment against every other one.
PAPER_PAIRS ?= xing2023,xing2023_regression_only

define paper_run
	$(PY) tools/synthesize_cohort.py --output_dir=$(1)/cohort \
	    --num_subjects=$(PAPER_SUBJECTS) --scar_model=$(2)
	$(PY) tools/make_records.py --input=$(1)/cohort --output_dir=$(1)/records
	$(PY) tools/crossval.py --config=$(EXPERIMENTS) --records_dir=$(1)/records \
	    --output_dir=$(1) --folds=$(FOLDS) $(PAPER_ARGS)
	for pair in $(PAPER_PAIRS) $(EXPERIMENTS); do \
	  dirs=$$(for e in $$(echo $$pair | tr , ' '); do \
	    [ -f $(1)/$$e/predictions.npz ] && printf '%s,' $(1)/$$e; done); \
	  case "$$dirs" in *,*,*) $(PY) tools/crossval.py --compare=$${dirs%,} \
	    --output_dir=$(1)/comparison ;; esac; \
	done
endef

paper: paper-default paper-tethered

paper-default: setup
	$(call paper_run,paper_out,passive)

# Scar that shortens when its surroundings do (it looks late).
paper-tethered: setup
	$(call paper_run,paper_tethered_out,tethered)

bench: setup
	$(PY) tools/benchmark.py records
	$(PY) tools/benchmark.py train
	$(PY) tools/benchmark.py serve
	$(PY) tools/benchmark.py patient

bazel-test: setup
	bazel test //...

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
