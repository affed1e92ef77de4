# vae_lab: `make train` and `make test` each do their own set-up on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    := data
ARGS    ?=

.PHONY: install data train test tb bench bench-gpu compare clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev,cluster]'
	touch $(STAMP)

data: install
	$(BIN)/python -m vae_lab.data.sources $(DATA)

train: install data
	$(BIN)/python -m vae_lab.train $(ARGS)

test: install data
	$(BIN)/python -m pytest -q tests

bench: install data
	$(BIN)/python -m vae_lab.bench json=outputs/bench.json $(ARGS)

bench-gpu: install data
	$(BIN)/python -m vae_lab.bench --config-name bench_gpu json=outputs/bench_gpu.json $(ARGS)

compare: install data
	$(BIN)/python -m vae_lab.train -m +experiment=compare hydra.sweep.dir=outputs/multirun/compare $(ARGS)
	$(BIN)/python -m vae_lab.report outputs/multirun/compare

tb: install
	$(BIN)/tensorboard --logdir outputs --bind_all

clean:
	rm -rf outputs/runs outputs/multirun .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
