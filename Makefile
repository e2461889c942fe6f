# Two commands on a fresh machine:  `make demo`  and  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
# nvcc's wrapper in /usr/local/bin misleads torch; the op's CUDA kernels need the real toolkit.
ifneq ($(wildcard /usr/local/cuda/bin/nvcc),)
export CUDA_HOME ?= /usr/local/cuda
endif

.PHONY: setup demo test lint ui clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard rvos/ops/csrc/*.* rvos/ops/csrc/*/*)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel ninja
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[test]"
	touch $(STAMP)

demo: setup  ## install, then run the whole pipeline on the bundled demo data
	dvc repro

test: setup  ## install, then run the test suite
	pytest -q

lint: setup
	ruff check .
	ruff format --check .

ui: setup  ## browse and compare runs
	mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$(CURDIR)/mlflow.db

clean:
	rm -rf data checkpoints predictions mlflow.db mlruns .dvc/cache .dvc/tmp
