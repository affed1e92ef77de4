# vae_lab: `make train` and `make test` each do their own set-up on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    := data
ARGS    ?=

.PHONY: install data train test test-browser tb bench bench-gpu compare compare-gpu docs-images clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev,cluster,datasets]'
	touch $(STAMP)

data: install
	$(BIN)/python -m vae_lab.data.sources $(DATA)

train: install data
	$(BIN)/python -m vae_lab.train $(ARGS)

test: install data
	$(BIN)/python -m pytest -q tests

# The explorer in headless Chromium from the OS packages (Debian's chromium + chromium-driver), driven by Selenium.
# VAE_LAB_EXPLORE_SCREENSHOT=docs/img/explore.png keeps its screenshot (VAE_LAB_EXPLORE_CKPT: of that checkpoint).
test-browser: install data
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)
	$(BIN)/pip install --quiet -e '.[dev,cluster,explore,browser]'
	$(BIN)/python -m pytest -q -s tests/test_explore_browser.py

bench: install data
	$(BIN)/python -m vae_lab.bench json=outputs/bench.json $(ARGS)

bench-gpu: install data
	$(BIN)/python -m vae_lab.bench --config-name bench_gpu json=outputs/bench_gpu.json $(ARGS)

compare: install data
	$(BIN)/python -m vae_lab.train -m +experiment=compare hydra.sweep.dir=outputs/multirun/compare $(ARGS); \
	status=$$?; $(BIN)/python -m vae_lab.report outputs/multirun/compare && exit $$status

# The compare sweep on one GPU: 12 multiruns side by side (dataset × seed × two groups of arms), whole-step CUDA
# graphs, 8 optimiser steps per Lightning batch, IWAE with 100 samples; each process's log in $(COMPARE_GPU)/logs.
COMPARE_GPU := outputs/multirun/compare_gpu
compare-gpu: install data
	mkdir -p $(COMPARE_GPU)/logs
	start=$$(date +%s); \
	for d in mnist fashion_mnist; do for s in 0 1 2; do for arms in vae,cvae,cvae_seed_conv,beta_1 beta_4,beta_16,capacity; do \
	  OMP_NUM_THREADS=1 $(BIN)/python -m vae_lab.train -m +experiment=compare "+arm=$$arms" data=$$d seed=$$s \
	    trainer=gpu model.cuda_graph=true data.steps_per_batch=8 eval.iwae_samples=100 trainer.enable_progress_bar=false \
	    hydra.sweep.dir=$(COMPARE_GPU) $(ARGS) > $(COMPARE_GPU)/logs/$${d}_s$${s}_$${arms%%,*}.log 2>&1 & \
	done; done; done; wait; \
	echo "sweep wall seconds: $$(( $$(date +%s) - start ))" | tee $(COMPARE_GPU)/wall.txt
	$(BIN)/python -m vae_lab.report $(COMPARE_GPU)

# TensorBoard on this machine only; `make tb TB_HOST=0.0.0.0` shows your runs to your network.
TB_HOST ?= 127.0.0.1
tb: install
	$(BIN)/tensorboard --logdir outputs --host $(TB_HOST)

# The README's picture: the recommended CVAE trained on MNIST (10 epochs, full evaluation), then 8 samples per class.
DOCS_RUN := outputs/runs/docs_cvae_mnist
docs-images: install data
	rm -rf $(DOCS_RUN)
	$(BIN)/python -m vae_lab.train model=cvae trainer.enable_progress_bar=false hydra.run.dir=$(DOCS_RUN)
	$(BIN)/python -m vae_lab.generate ckpt_path=$(DOCS_RUN)/checkpoints/last.ckpt num_samples=80 \
	  out=docs/img/cvae_mnist_samples.png

clean:
	rm -rf outputs/runs outputs/multirun .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
