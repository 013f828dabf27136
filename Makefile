# Two entry points, each doing its own set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo lint test test-label-studio test-cluster test-fast venv clean

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision pinned to the releases this project is developed with (resolve offline here).
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Two jobs at a time, one torch thread each (hydra/launcher=parallel): measured 3-7x faster than one job
# with two threads on a busy 2-core machine (python -m benchmarks.launchers; docs/sweeps.md "Locally in parallel").
demo: $(STAMP)
	$(VENV)/bin/al-run -m experiment=demo hydra/launcher=parallel
	$(VENV)/bin/al-plot --runs outputs/demo --out outputs/demo/figures

# The [label] extra (Label Studio SDK, for `al-label sync`) for `make test`; `make demo` stays lean. The SDK is
# installed holding numpy at the version above (see pyproject.toml).
LABEL_STAMP := $(VENV)/.installed-label

$(LABEL_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,label]' "numpy==$$($(PY) -c 'import numpy; print(numpy.__version__)')"
	touch $(LABEL_STAMP)

# A Label Studio server for the real-server tests (tests/test_label_studio.py, marker label_studio_server), in its own
# venv because label-studio 1.23.2 pins numpy < 2.3 (and Django et al.) and would change ours. Its dependencies are
# held at a known-good set (a new sentry-sdk once stopped the server from starting):
# tests/label_studio_server_constraints.txt.
LABEL_STUDIO_VENV := $(VENV)/label-studio
LABEL_SERVER_STAMP := $(VENV)/.installed-label-server

$(LABEL_SERVER_STAMP): $(LABEL_STAMP)
	test -x $(LABEL_STUDIO_VENV)/bin/python || $(PYTHON) -m venv $(LABEL_STUDIO_VENV)
	$(LABEL_STUDIO_VENV)/bin/python -m pip install -q label-studio==1.23.2 -c tests/label_studio_server_constraints.txt
	touch $(LABEL_SERVER_STAMP)

# The [tracking] extra (tensorboard, mlflow-skinny, wandb) for tests/test_tracking.py; `make demo` writes CSVs only.
TRACKING_STAMP := $(VENV)/.installed-tracking

$(TRACKING_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,tracking]' "numpy==$$($(PY) -c 'import numpy; print(numpy.__version__)')"
	touch $(TRACKING_STAMP)

# ruff (pyproject.toml [tool.ruff]): the linter and the formatter's check; `ruff format .` fixes the formatting.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) $(LABEL_STAMP) $(TRACKING_STAMP)
	$(PY) -m pytest -q -m "not slurm and not label_studio_server"

# The real Label Studio server's tests: apart from `make test` (installing the server and starting it take minutes).
test-label-studio: $(LABEL_SERVER_STAMP)
	$(PY) -m pytest -q -m label_studio_server

# The real one-node SLURM cluster's tests (tests/test_slurm_cluster.py; Debian's slurm-wlm + munge, which .ci/run
# installs): apart from `make test` because their waits are SLURM's clock (time-limit checks, requeue delays).
test-cluster: $(STAMP)
	$(PY) -m pytest -q -m slurm

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) outputs/demo
