"""Shared test helpers: compose the real Hydra configs on small real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
BENCH_CONF = ROOT / "benchmarks" / "conf"
DATA = ROOT / "data"

CLASSIFIER_CACHE = tempfile.mkdtemp(prefix="vae_lab_test_classifiers_")
# A tiny but real end-of-training evaluation (its classifier cached outside data/, so the real one is never replaced).
EVAL_FAST = ["++eval.max_test_images=300", "++eval.fid_samples=300", "++eval.per_class=20", "++eval.iwae_samples=4",
             "++eval.probe_train_images=600", "++eval.classifier.train_subset=2000", "++eval.classifier.max_steps=3",
             f"++eval.classifier.cache_dir={CLASSIFIER_CACHE}"]
# A few real batches: enough to exercise every code path in seconds.
FAST = ["trainer.max_epochs=1", "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=2", "trainer.enable_progress_bar=false", "data.train_subset=2000",
        "trainer.enable_model_summary=false", "trainer.log_every_n_steps=1", *EVAL_FAST]


def compose_cfg(out: Path, *overrides: str, config: str = "train", conf: Path = CONF) -> DictConfig:
    """The composed config, as `python -m vae_lab.train` would see it, writing under `out` (`conf`: the folder of
    `config`, e.g. BENCH_CONF)."""
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose(config, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    if "paths" in cfg:
        with open_dict(cfg):
            cfg.paths.root_dir = str(ROOT)
            cfg.paths.output_dir = str(out)
    return cfg


def cli_env() -> dict[str, str]:
    """The environment the entry points run in: Hydra's short error reports, and this checkout importable."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": path}


def run_cli(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run an entry point as a user would, capturing its output."""
    return subprocess.run([sys.executable, "-m", module, *args], check=False, cwd=cwd, capture_output=True, text=True,
                          env=cli_env(), timeout=600)


def run_cli_cases(module: str, cases: list[list[str]], cwd: Path = ROOT) -> list[SimpleNamespace]:
    """Run an entry point on several command lines, each as `run_cli` would, in one interpreter (`tests.cli_runner`):
    for command lines that fail before any work, where a fresh interpreter's imports would be most of the time.
    With module `-`, each command line starts with its entry point's module."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "results.json"
        done = subprocess.run([sys.executable, "-m", "tests.cli_runner", module, str(out)], input=json.dumps(cases),
                              check=False, cwd=cwd, capture_output=True, text=True, env=cli_env(), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return [SimpleNamespace(**result) for result in json.loads(out.read_text())]


@pytest.fixture(scope="module")
def one_thread():
    """Small fits gain nothing from a second torch thread, and on shared cores its stalls dominate."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets (`make data` puts them here; `make test` runs it first)."""
    if not (DATA / "MNIST" / "raw").exists() or not (DATA / "FashionMNIST" / "raw").exists():
        pytest.fail("data/ is missing: run `make data` (or `make test`, which runs it)")
    return DATA


@pytest.fixture(scope="session")
def cvae_cli(tmp_path_factory, data_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """One tiny CVAE training run through the real CLI (model summary on, as by default): its folder and output."""
    out = tmp_path_factory.mktemp("cvae_run")
    result = run_cli("vae_lab.train", "model=cvae", *FAST, "trainer.enable_model_summary=true", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.fixture(scope="session")
def cvae_run(cvae_cli) -> Path:
    """The tiny CVAE run's folder."""
    return cvae_cli[0]


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, data_dir) -> Path:
    """A tiny 2 × 2 sweep through the real CLI, `model=vae,beta_vae model.beta=1,4`: its folder."""
    out = tmp_path_factory.mktemp("tiny_sweep")
    result = run_cli("vae_lab.train", "-m", "model=vae,beta_vae", "model.beta=1,4", *FAST, f"hydra.sweep.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    return out
