# Two entry points, each doing its own set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast venv clean

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision pinned to the releases this project is developed with (resolve offline here).
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Two jobs at a time, one torch thread each (hydra/launcher=parallel): measured 3-7x faster than one job
# with two threads on a busy 2-core machine (scripts/bench_launchers.py; docs/sweeps.md "Locally in parallel").
demo: $(STAMP)
	$(VENV)/bin/al-run -m experiment=demo hydra/launcher=parallel
	$(VENV)/bin/al-plot --runs outputs/demo --out outputs/demo/figures

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) outputs/demo
