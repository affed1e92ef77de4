# vae_lab: `make train` and `make test` each do their own set-up on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
BROWSER := $(VENV)/.browser
DATA    := data
ARGS    ?=

.PHONY: install data train test chromium browser test-browser tb bench bench-gpu bench-explore compare compare-time compare-probe compare-gpu docs-results docs-study docs-screenshots docs-explore clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev,cluster,datasets,explore]'
	touch $(STAMP)

# Selenium and Panel, for the explorer's browser test and the library comparison only (not in `make install`).
browser: $(BROWSER)

$(BROWSER): $(STAMP)
	$(BIN)/pip install --quiet -e '.[browser,panel]'
	touch $(BROWSER)

data: install
	$(BIN)/python -m vae_lab.data.mnist $(DATA)

train: install data
	$(BIN)/python -m vae_lab.train $(ARGS)

test: install data
	$(BIN)/python -m pytest -q tests

# Headless Chromium from the OS packages (Debian's chromium + chromium-driver), for the explorer's browser tests.
chromium:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)

# The explorer in headless Chromium, driven by Selenium. VAE_LAB_EXPLORE_SCREENSHOT=docs/img/explore.png keeps its
# screenshot (VAE_LAB_EXPLORE_CKPT: of that checkpoint).
test-browser: install browser data chromium
	$(BIN)/python -m pytest -q -s tests/test_explore_browser.py

# docs/img/explore.png and explore_walk_*.png: the browser tests' screenshots of the default CVAE trained for two
# epochs on 30,000 Fashion-MNIST images (the walk-through of docs/explore.md).
EXPLORE_RUN := outputs/runs/docs_explore
docs-explore: install browser data chromium
	$(BIN)/python -m vae_lab.train model=cvae data=fashion_mnist data.train_subset=30000 trainer.max_epochs=2 \
	  eval.enabled=false hydra.run.dir=$(EXPLORE_RUN)
	VAE_LAB_EXPLORE_CKPT=$(EXPLORE_RUN)/checkpoints/last.ckpt VAE_LAB_EXPLORE_SCREENSHOT=docs/img/explore.png \
	  VAE_LAB_EXPLORE_WALK=docs/img $(BIN)/python -m pytest -q -s tests/test_explore_browser.py -k "moving or walk"

# The measurements of vae_lab itself (benchmarks/, not installed): vae_lab's training path against a plain PyTorch
# loop (docs/speed.md), on the CPU and on a GPU.
bench: install data
	$(BIN)/python -m benchmarks.bench json=outputs/bench.json $(ARGS)

bench-gpu: install data
	$(BIN)/python -m benchmarks.bench --config-name bench_gpu json=outputs/bench_gpu.json $(ARGS)

# The explorer's latency per slider move (docs/explore.md): key press to new image in headless Chromium for the
# whole page and its core in Gradio and in Panel, then the server's part: make bench-explore ARGS="ckpt_path=…".
bench-explore: install browser data chromium
	$(BIN)/python -m benchmarks.explorer $(ARGS)

# The comparison (docs/results.md): one sweep into one folder, its jobs side by side through Hydra's joblib
# launcher (compare.yaml: 2 jobs × 1 thread), its wall time in $(COMPARE)/sweep.json, then its report.
COMPARE := outputs/multirun/compare
compare: install data
	$(BIN)/python -m vae_lab.train -m +experiment=compare hydra.sweep.dir=$(COMPARE) $(ARGS); \
	status=$$?; $(BIN)/python -m vae_lab.report $(COMPARE) && exit $$status

# The timing pass: every arm of $(COMPARE) timed in one process (interleaved windows) into timing.json; the
# report's time columns then come from it. Run it on a machine with nothing else running.
compare-time: install data
	$(BIN)/python -m vae_lab.timing_pass $(COMPARE) $(ARGS) && $(BIN)/python -m vae_lab.report $(COMPARE)

# n_jobs × threads for compare.yaml, by measurement: a few short runs of each layout, the layouts in turn.
compare-probe: install data
	$(BIN)/python -m benchmarks.probe $(ARGS)

# The compare sweep on one GPU through the same launcher: 12 jobs side by side, whole-step CUDA graphs, 8 optimiser
# steps per Lightning batch, IWAE with 100 samples.
COMPARE_GPU := outputs/multirun/compare_gpu
compare-gpu: install data
	$(BIN)/python -m vae_lab.train -m +experiment=compare hydra.launcher.n_jobs=12 threads=1 \
	  trainer=gpu model.cuda_graph=true data.steps_per_batch=8 eval.iwae_samples=100 \
	  hydra.sweep.dir=$(COMPARE_GPU) $(ARGS); \
	status=$$?; $(BIN)/python -m vae_lab.report $(COMPARE_GPU) && exit $$status

# TensorBoard on this machine only; `make tb TB_HOST=0.0.0.0` shows your runs to your network.
TB_HOST ?= 127.0.0.1
tb: install
	$(BIN)/tensorboard --logdir outputs --host $(TB_HOST)

# docs/img/tensorboard_*.png: TensorBoard's tabs on a tiny sweep, shot by headless Chromium (docs/tensorboard.md)
# A sweep's report.md into its docs page, verbatim, between the page's report markers; its figures into docs/img/.
STUDY := outputs/multirun/unsupervised_study_cpu
docs-results:
	$(BIN)/python scripts/report_into_page.py $(COMPARE) docs/results.md docs/img/results

docs-study:
	$(BIN)/python scripts/report_into_page.py $(STUDY) docs/disentanglement.md docs/img/study

docs-screenshots: install data docs-explore
	bash scripts/docs_screenshots.sh $(BIN)/python

clean:
	rm -rf outputs/runs outputs/multirun .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
