"""`python -m vae_lab.train`: train one model (or a multirun sweep), test it, write metrics.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from vae_lab.cli import run_summary, user_errors
from vae_lab.data.datamodule import CLASS_NAMES
from vae_lab.errors import ConfigError, check_number, user_error
from vae_lab.evaluate import eval_options, test_set_metrics
from vae_lab.models.base import BaseVAE
from vae_lab.results import failed_record, objective_value, run_record, write_json
from vae_lab.timing import TrainTimer
from vae_lab.viz import tensorboard

log = logging.getLogger(__name__)
MAX_SEED = 2**32 - 1  # numpy's seeds, which Lightning's seed_everything sets too


TYPES: dict[str, tuple[bool, bool]] = {   # key: (whole number, may be null): a wrong type would fail deep in torch
    "seed": (True, False), "data.batch_size": (True, False), "data.train_subset": (True, True),
    "data.val_size": (True, False), "net.image_size": (True, False), "model.latent_dim": (True, False),
    "model.beta": (False, False), "model.lr": (False, False), "model.weight_decay": (False, False),
    "model.obs_sigma": (False, False), "model.gamma": (False, False), "model.capacity_max": (False, False),
    "model.capacity_steps": (True, False), "model.prior_components": (True, False), "trainer.max_epochs": (True, False),
    "trainer.log_every_n_steps": (True, False), "data.steps_per_batch": (True, False),
}


def check_types(cfg: DictConfig) -> None:
    """One line for a value of the wrong type (`model.beta=abc`, `data.batch_size=1.5`); ranges are the models'."""
    absent = object()
    for key, (whole, nullable) in TYPES.items():
        value = OmegaConf.select(cfg, key, default=absent)
        if value is not absent:
            check_number(key, value, whole=whole, nullable=nullable)


def check(cfg: DictConfig) -> None:
    """Reject config combinations that would only fail later with a confusing traceback."""
    check_types(cfg)
    if cfg.data.image_size != cfg.net.image_size:
        raise ConfigError(f"data.image_size={cfg.data.image_size} but net.image_size={cfg.net.image_size}; "
                          "set net.image_size (the data follows it)")
    if cfg.objective.direction not in ("minimize", "maximize"):
        raise ConfigError(f"objective.direction={cfg.objective.direction!r}: choose minimize or maximize")
    check_ranges(cfg)
    check_labels(cfg)
    check_checkpoint(cfg)
    if cfg.eval.enabled:  # an evaluation option's typo would otherwise surface only after the whole training
        eval_options(cfg.eval)


def check_ranges(cfg: DictConfig) -> None:
    """Values torch or Lightning would take without complaint but that make no run (or not the one meant)."""
    check_number("seed", cfg.seed, whole=True, minimum=0)
    if cfg.seed > MAX_SEED:
        raise ConfigError(f"seed={cfg.seed}: must be at most {MAX_SEED}")
    check_number("trainer.log_every_n_steps", cfg.trainer.get("log_every_n_steps", 50), whole=True, minimum=0)
    epochs = cfg.trainer.get("max_epochs")
    if epochs is not None and (epochs == 0 or epochs < -1):
        raise ConfigError(f"trainer.max_epochs={epochs}: must be ≥ 1 (or -1: until +trainer.max_steps)")


def check_labels(cfg: DictConfig) -> None:
    """A conditional model needs the dataset's class labels, as many as it has classes."""
    if not getattr(get_class(cfg.model._target_), "conditional", False):
        return
    classes = len(CLASS_NAMES.get(cfg.data.name, ()))
    if not classes:
        raise ConfigError(f"model {cfg.model._target_.rsplit('.', 1)[-1]} is conditional on a class label, and "
                          f"data={cfg.data.name} has none (it has factors); choose data=mnist or data=fashion_mnist")
    if cfg.model.num_classes != classes:
        raise ConfigError(f"model.num_classes={cfg.model.num_classes}, but data={cfg.data.name} has {classes} "
                          f"classes; set model.num_classes={classes}")


def check_checkpoint(cfg: DictConfig) -> None:
    """The checkpoint a run continues from must exist (Lightning would start afresh with only a warning)."""
    path = cfg.ckpt_path or ("last" if cfg.resume else None)
    if path == "last":
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise ConfigError(f"resume: no {last}; give the run's folder (hydra.run.dir=THE_RUN) or ckpt_path=FILE")
    elif path is not None and not Path(path).is_file():
        raise ConfigError(f"ckpt_path={path}: no such checkpoint file")


def build(cfg: DictConfig, **trainer_kwargs: Any) -> tuple[pl.LightningDataModule, BaseVAE, pl.Trainer]:
    """Seed, then instantiate the datamodule, model and trainer a config describes."""
    check(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, net=cfg.net, _recursive_=False)
    trainer_kwargs.setdefault("callbacks", [instantiate(c) for c in cfg.callbacks.values()])
    trainer_kwargs.setdefault("logger", instantiate(cfg.logger))
    return datamodule, model, instantiate(cfg.trainer, **trainer_kwargs)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test on the full test set, and write the run's metrics.json; return its record."""
    datamodule, model, trainer = build(cfg)
    callbacks, logger = trainer.callbacks, trainer.logger
    choices = dict(HydraConfig.get().runtime.choices)
    started = time.time()
    tensorboard.log_run_start(logger, cfg)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path or ("last" if cfg.resume else None))
        test = trainer.test(model, datamodule=datamodule, verbose=False)[0]  # sync_dist: every process's shard
        if not trainer.is_global_zero:
            return {}  # under DDP, rank 0 alone evaluates and writes
        if cfg.eval.enabled:  # where it trained: Lightning's teardown has just moved the model to the CPU
            test.update(test_set_metrics(model.to(trainer.strategy.root_device), datamodule, cfg.eval))
    except Exception as err:  # the run folder says why it stopped (the report lists it); the error goes on up
        if trainer.is_global_zero:
            write_failure(cfg, err)
        raise
    timer = next(c for c in callbacks if isinstance(c, TrainTimer))
    record = run_record(cfg, choices, model, test, timer.summary(), trainer.current_epoch)
    record["processes"] = trainer.world_size
    write_json(Path(cfg.paths.output_dir) / "metrics.json", record)
    step = trainer.fit_loop.epoch_loop._batches_that_stepped  # the step Lightning logged the test metrics at
    single = HydraConfig.get().mode != RunMode.MULTIRUN  # a sweep's HParams experiment: vae_lab.sweep, once
    tensorboard.log_run_end(logger, record, step, started, time.time(), experiment=single)
    return record


def write_failure(cfg: DictConfig, err: BaseException) -> None:
    """The run folder's metrics.json for a run that stopped: what it was, `status: failed` and why."""
    cause = user_error(err) or err  # not Hydra's wrapper around an error raised while instantiating
    reason = f"{type(cause).__name__}: {cause}"
    try:
        record = failed_record(cfg, dict(HydraConfig.get().runtime.choices), reason)
    except (TypeError, ValueError):  # the values that made it fail may not even read as numbers
        record = {"status": "failed", "reason": reason}
    write_json(Path(cfg.paths.output_dir) / "metrics.json", record)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the run's objective value (what hydra/sweeper=optuna optimises)."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    with user_errors():
        try:
            record = train(cfg)
        except Exception as err:
            if not multirun:
                raise
            cause = user_error(err)  # the user's to fix: one line; anything else: with its traceback
            log.error("this job failed, the sweep goes on: %s", cause or err, exc_info=cause is None)
            if not (Path(cfg.paths.output_dir) / "metrics.json").exists():  # refused before training began
                write_failure(cfg, err)
            record = {"status": "failed"}
        if record.get("status") == "ok":
            print(run_summary(record, cfg.paths.output_dir))
        return objective_value(record, cfg.objective) if record else None  # {}: a DDP process other than rank 0


if __name__ == "__main__":
    main()
