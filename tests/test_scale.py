"""Scaling out: DDP on 2 CPU processes, the joblib and SLURM launchers, the Optuna search and its objective."""

from __future__ import annotations

import json
import math

import pytest
import submitit
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import EVAL_FAST, compose_cfg, run_cli
from vae_lab.data.batches import BatchIndexSampler
from vae_lab.data.datamodule import datamodule_from_checkpoint
from vae_lab.errors import ConfigError
from vae_lab.models import load_model, read_checkpoint
from vae_lab.results import objective_value

TINY = ["trainer.max_epochs=1", "data.train_subset=1024", "trainer.enable_progress_bar=false", *EVAL_FAST]


@pytest.mark.parametrize("shuffle", [True, False])
def test_sampler_shards_are_disjoint_and_cover_the_split(shuffle):
    shards = [torch.cat(list(BatchIndexSampler(101, 8, shuffle, seed=3, rank=r, world=2))) for r in range(2)]
    joined = torch.cat(shards)
    assert len(set(joined.tolist())) == len(joined)                      # no image in two processes
    assert len(joined) == (100 if shuffle else 101)                     # training shards cut to equal length
    if shuffle:
        assert len(shards[0]) == len(shards[1])
        assert [len(BatchIndexSampler(101, 8, True, rank=r, world=2)) for r in range(2)] == [7, 7]
    else:
        assert sorted(joined.tolist()) == list(range(101))              # every test image scored once


def test_ddp_two_cpu_processes_write_once_and_match_a_single_process(tmp_path, data_dir):
    out = tmp_path / "ddp"
    result = run_cli("vae_lab.train", "trainer=ddp", "+arm=cvae", *TINY, "data.train_subset=4000",  # 400 test images
                     f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["processes"] == 2
    assert list(tmp_path.rglob("metrics.json")) == [out / "metrics.json"]
    # the logged test loss (each process scored half the test images; sync_dist averages them) against one
    # process scoring the whole test subset with the same weights, averaged over 20 draws of z (one draw of z
    # moves a 1-epoch model's loss by about ±1% on 400 images; a process's half alone would also be that close,
    # so the exact averaging is checked by the sampler test above)
    ckpt = out / "checkpoints" / "last.ckpt"
    model = load_model(ckpt)
    datamodule = datamodule_from_checkpoint(read_checkpoint(ckpt))
    datamodule.setup()
    test = datamodule.splits["test"]
    x, y = test[torch.arange(len(test))]
    torch.manual_seed(0)
    with torch.no_grad():
        single = float(torch.stack([model.loss_terms((x, y))["loss"] for _ in range(20)]).mean())
    assert record["test/loss"] == pytest.approx(single, rel=0.02)


def test_local_launcher_runs_jobs_in_parallel_processes(tmp_path, data_dir):
    """Two workers, four jobs: a worker's second job counts its start-up from its first job's end, not from the
    process's start (the entry point reaches the worker's one clock, though the launcher pickles it by value)."""
    result = run_cli("vae_lab.train", "-m", "hydra/launcher=local", "+arm=vae,cvae", "seed=0,1", *TINY,
                     f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    records = [json.loads(next(tmp_path.glob(f"{job}_*/metrics.json")).read_text()) for job in range(4)]
    assert [r["model"] for r in records] == ["vae", "vae", "cvae", "cvae"] and all(r["status"] == "ok" for r in records)
    first = min(r["time/total_seconds"] for r in records[:2])
    assert all(r["time/startup_seconds"] < 0.5 * first for r in records[2:]), [r["time/startup_seconds"] for r in records]


def test_slurm_launcher_sends_the_configured_resources(tmp_path, monkeypatch):
    cfg = compose_cfg(tmp_path, "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                      "hydra.launcher.timeout_min=30", "hydra.launcher.mem_gb=64", "hydra.launcher.gpus_per_node=2",
                      f"hydra.sweep.dir={tmp_path}")
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config, launcher.task_function, launcher.hydra_context = cfg, None, None
    sent = {}

    def capture(executor, fn, *args):
        sent["sbatch"] = executor._executor._make_submission_file_text("python -m vae_lab.train", "0")
        return []

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun is here"
    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)  # stop before sbatch
    launcher.launch([["+arm=vae"], ["+arm=cvae"]], initial_job_idx=0)
    for line in ("--partition=gpu", "--time=30", "--mem=64GB", "--gpus-per-node=2", "--cpus-per-task=8",
                 "--ntasks-per-node=1", "--nodes=1"):
        assert f"#SBATCH {line}" in sent["sbatch"]


def test_optuna_search_finds_a_best_trial_under_the_constraint(tmp_path, data_dir):
    result = run_cli("vae_lab.train", "-m", "+experiment=search", "hydra.sweeper.n_trials=2",
                     "trainer.max_epochs=1", "objective.constraint.min=0.0", *TINY[1:], f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    losses = [json.loads(p.read_text())["test/loss"] for p in tmp_path.glob("*/metrics.json")]
    assert len(losses) == 2 and best.best_value == pytest.approx(min(losses))
    assert set(best.best_params) == {"model.beta", "model.latent_dim"}


def test_objective_scores_failures_and_missed_constraints_as_worst():
    objective = OmegaConf.create({"metric": "test/loss", "direction": "minimize",
                                  "constraint": {"metric": "test/probe_accuracy", "min": 0.6}})
    ok = {"status": "ok", "test/loss": 100.0, "test/probe_accuracy": 0.7}
    assert objective_value(ok, objective) == 100.0
    assert objective_value({**ok, "test/probe_accuracy": 0.5}, objective) == math.inf
    assert objective_value({"status": "failed"}, objective) == math.inf
    objective.direction = "maximize"
    assert objective_value({"status": "failed"}, objective) == -math.inf
    with pytest.raises(ConfigError, match="objective.metric"):
        objective_value(ok, OmegaConf.merge(objective, {"metric": "test/nope"}))
    with pytest.raises(ConfigError, match="objective.constraint.metric='test/probe_acc' is not in metrics.json"):
        objective_value(ok, OmegaConf.merge(objective, {"constraint": {"metric": "test/probe_acc"}}))
    assert objective_value({**ok, "test/probe_accuracy": None}, objective) == -math.inf  # measured, not finite
