"""`python -m vae_lab.train`: train one model (or a multirun sweep), test it, write metrics.json."""

import errno
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import hydra.errors
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only

from vae_lab.checkpoints import SafeCheckpointIO, read_checkpoint
from vae_lab.cli import entry_point, run_summary
from vae_lab.data import DATAMODULES
from vae_lab.errors import (
    CheckpointError,
    ConfigError,
    RunFolderError,
    StorageError,
    check_finite,
    check_flag,
    check_number,
    check_seed,
    user_error,
)
from vae_lab.evaluate import eval_options, test_set_metrics
from vae_lab.models.base import MODELS, BaseVAE
from vae_lab.nets import NETS
from vae_lab.registry import HYDRA_KEYS, check_settings
from vae_lab.results import failed_record, objective_value, read_json, run_record, write_json
from vae_lab.resume import check_same_settings
from vae_lab.run_folder import claim
from vae_lab.timing import Stopwatch, TrainTimer, job_ended, job_startup_seconds
from vae_lab.viz import tensorboard

log = logging.getLogger("vae_lab.train")  # not __main__ under python -m


def check(cfg: DictConfig) -> None:
    """Reject config combinations that would only fail later with a confusing traceback."""
    check_finite(OmegaConf.to_container(cfg, resolve=False))
    check_seed("seed", cfg.seed)  # before the groups that take it (data.seed: ${seed})
    check_schema(cfg)
    if cfg.data.image_size != cfg.net.image_size:
        raise ConfigError(f"data.image_size={cfg.data.image_size} but net.image_size={cfg.net.image_size}; "
                          "set net.image_size (the data follows it)")
    if cfg.objective.direction not in ("minimize", "maximize"):
        raise ConfigError(f"objective.direction={cfg.objective.direction!r}: choose minimize or maximize")
    check_ranges(cfg)
    check_checkpoint(cfg)
    check_flag("eval.enabled", cfg.eval.enabled)
    eval_options(cfg.eval)  # a typo would surface only after the whole training, or (off) be kept unseen in the config


def settings(node: DictConfig) -> dict[str, Any]:
    """A config group's settings as plain values (interpolations resolved)."""
    return OmegaConf.to_container(node, resolve=True)


def check_schema(cfg: DictConfig) -> None:
    """Every group's keys and value types against its class's constructor: the schema, declared once there."""
    model = MODELS.get(cfg.model.get("_target_"), "model._target_")
    check_settings(model, without_hydra_keys(settings(cfg.model)), "model", given=("net",))
    net = without_hydra_keys(settings(cfg.net))
    if net.get("image_channels", 1) is None:  # data.channels=null: the images' own, known once they are opened
        net["image_channels"] = 1
    check_settings(NETS.get(cfg.net.get("_target_"), "net._target_"), net, "net", given=("latent_dim", "label_dim"))
    check_settings(DATAMODULES.get(cfg.data.get("_target_"), "data._target_"), without_hydra_keys(settings(cfg.data)),
                   "data")
    groups = {"trainer": cfg.trainer, "logger": cfg.logger, **{f"callbacks.{k}": v for k, v in cfg.callbacks.items()}}
    for where, node in groups.items():
        if node is not None and "_target_" in node:
            check_settings(library_class(node._target_, where), without_hydra_keys(settings(node)), where)


def library_class(target: str, where: str) -> type:
    """The class a trainer, logger or callback config names (the user's own config: Hydra imports it)."""
    try:
        return get_class(target)
    except Exception as err:  # noqa: BLE001 (Hydra's locate error: one line)
        raise ConfigError(f"{where}._target_={target!r}: no such class ({str(err).splitlines()[0]})") from None


def without_hydra_keys(node: dict[str, Any]) -> dict[str, Any]:
    """A group's settings less Hydra's own keys (`_target_`, `_recursive_`, …)."""
    return {k: v for k, v in node.items() if k not in HYDRA_KEYS}


def check_ranges(cfg: DictConfig) -> None:
    """Values torch or Lightning would take without complaint but that make no run (or not the one meant)."""
    check_number("trainer.log_every_n_steps", cfg.trainer.get("log_every_n_steps", 50), whole=True, minimum=0)
    epochs = cfg.trainer.get("max_epochs")
    if epochs is not None and (epochs == 0 or epochs < -1):
        raise ConfigError(f"trainer.max_epochs={epochs}: must be ≥ 1 (or -1: until +trainer.max_steps)")
    steps = cfg.trainer.get("max_steps")
    if epochs == -1 and steps in (None, -1) and cfg.trainer.get("max_time") is None:
        raise ConfigError("trainer.max_epochs=-1 without +trainer.max_steps (or +trainer.max_time) would train "
                          "forever; give one of them, or max_epochs ≥ 1")


def check_labels(cfg: DictConfig, datamodule: pl.LightningDataModule) -> None:
    """A conditional model needs the dataset's class labels, as many as it has classes."""
    if not MODELS.get(cfg.model._target_, "model._target_").conditional:
        return
    classes = getattr(datamodule, "num_classes", None) or 0
    if not classes:
        kind = "it has factors" if hasattr(datamodule, "ground_truth") else "its images are unlabelled"
        raise ConfigError(f"model {cfg.model._target_.rsplit('.', 1)[-1]} is conditional on a class label, and "
                          f"data={cfg.data.name} has none ({kind}); choose data=mnist, fashion_mnist, cifar10 or "
                          "labelled images")
    if cfg.model.num_classes != classes:
        raise ConfigError(f"model.num_classes={cfg.model.num_classes}, but data={cfg.data.name} has {classes} "
                          f"classes; set model.num_classes={classes}")


def resume_path(cfg: DictConfig) -> Path | None:
    """The checkpoint a run continues from (`ckpt_path`, or last.ckpt for `resume=true`); None if fresh."""
    path = cfg.ckpt_path or ("last" if cfg.resume else None)
    if path == "last":
        return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    return None if path is None else Path(path)


def check_checkpoint(cfg: DictConfig) -> None:
    """The resumed checkpoint exists, reads intact, and is of the configured model and net."""
    path = resume_path(cfg)
    if path is None:
        return
    if cfg.resume and not cfg.ckpt_path or cfg.ckpt_path == "last":
        if not path.is_file():
            raise ConfigError(f"resume: no {path}; give the run's folder (hydra.run.dir=THE_RUN) or ckpt_path=FILE")
    elif path.is_dir():
        raise ConfigError(f"ckpt_path={path}: is a folder; give the checkpoint file in it (e.g. last.ckpt)")
    elif not path.is_file():
        raise ConfigError(f"ckpt_path={path}: no such checkpoint file")
    checkpoint = read_checkpoint(path)
    model, net = checkpoint["vae_lab_model"], (checkpoint.get("hyper_parameters") or {}).get("net") or {}
    if model != cfg.model._target_:
        raise CheckpointError(f"{path}: a checkpoint of {model.rsplit('.', 1)[-1]}, but this run's model is "
                              f"{cfg.model._target_.rsplit('.', 1)[-1]}; choose the run's model=…")
    if net.get("_target_") != cfg.net._target_:
        raise CheckpointError(f"{path}: a checkpoint of net {str(net.get('_target_')).rsplit('.', 1)[-1]}, but this "
                              f"run's net is {cfg.net._target_.rsplit('.', 1)[-1]}; choose the run's net=…")


def check_weights_fit(model: BaseVAE, ckpt_path: str | Path) -> None:
    """The checkpoint's weights fit the model built from this config (same names and shapes), before fit loads them."""
    saved = read_checkpoint(ckpt_path)["state_dict"]
    own = model.state_dict()
    wrong = sorted(set(own) ^ set(saved)) or [k for k in own if tuple(own[k].shape) != tuple(saved[k].shape)]
    if wrong:
        raise CheckpointError(f"{ckpt_path}: its weights do not fit this run's model ({len(wrong)} differ, e.g. "
                              f"{wrong[0]}); resume with the settings it was trained with")


def instantiate_trainer(cfg: DictConfig, **trainer_kwargs: Any) -> pl.Trainer:
    """The configured Trainer; Lightning's own refusals (an unknown precision, no GPU, 0 devices) as one line."""
    try:
        return instantiate(cfg.trainer, **trainer_kwargs)
    except hydra.errors.InstantiationException as err:
        cause = err.__cause__
        if user_error(err) is not None or cause is None or type(cause).__module__.startswith("hydra"):
            raise
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ConfigError(f"trainer: Lightning refuses these settings: {first}") from err


def build(cfg: DictConfig, **trainer_kwargs: Any) -> tuple[pl.LightningDataModule, BaseVAE, pl.Trainer]:
    """Seed, then instantiate the datamodule, model and trainer a config describes."""
    check(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = DATAMODULES.build(settings(cfg.data), "data")
    check_labels(cfg, datamodule)
    if cfg.net.get("image_channels", 1) is None:  # data.channels=null: the images' own, known once they are opened
        with open_dict(cfg):
            cfg.net.image_channels = datamodule.channels
    model = MODELS.build(settings(cfg.model), "model", net=settings(cfg.net))
    ckpt_path = resume_path(cfg)
    if ckpt_path is not None:
        check_weights_fit(model, ckpt_path)
    trainer_kwargs.setdefault("callbacks", [instantiate(c) for c in cfg.callbacks.values()])
    trainer_kwargs.setdefault("logger", instantiate(cfg.logger))
    if "plugins" not in cfg.trainer:  # every checkpoint written atomically and read back without running code
        trainer_kwargs.setdefault("plugins", [SafeCheckpointIO()])
    return datamodule, model, instantiate_trainer(cfg, **trainer_kwargs)


def apply_threads(threads: int | None) -> None:
    """`threads`: torch's intra-op threads for this job; null leaves torch's default."""
    if threads is None:
        return
    check_number("threads", threads, whole=True, minimum=1)
    torch.set_num_threads(int(threads))


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test and write metrics.json in the locked run folder (`claim`); return the record."""
    if rank_zero_only.rank != 0:  # a DDP process Lightning started: rank 0 holds the folder
        return fit_and_test(cfg)
    with claim(cfg.paths.output_dir, continuing=resume_path(cfg) is not None, overwrite=cfg.get("overwrite", False)):
        try:
            return fit_and_test(cfg)
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise StorageError(full_disk(Path(cfg.paths.output_dir), err)) from err


def full_disk(folder: Path, err: OSError) -> str:
    """What a full disk stopped, and what of the run is kept."""
    last = folder / "checkpoints" / "last.ckpt"
    kept = [f"the last good checkpoint ({last})"] if last.is_file() else []
    try:
        finished = read_json(folder / "metrics.json").get("status") == "ok"  # the run's end failed to log
    except (OSError, ValueError, AttributeError):
        finished = False
    kept += ["the results (metrics.json)"] if finished else []
    return (f"could not write in run folder {folder}: {err.strerror}" + (f" ({err.filename})" if err.filename else "")
            + (f"; kept: {' and '.join(kept)}" if kept else "; no checkpoint was written before it"))


def fit_and_test(cfg: DictConfig) -> dict[str, Any]:
    """`train`'s work, in a run folder it holds; each part's time in metrics.json's time/*."""
    watch = Stopwatch()
    watch.add("startup", job_startup_seconds())  # interpreter, imports, Hydra's composition (or the previous job)
    job_start = time.perf_counter()
    apply_threads(cfg.get("threads"))
    with watch("setup"):  # the objects, and the data read into memory (Lightning's own setup then finds it there)
        datamodule, model, trainer = build(cfg)
        if trainer.world_size == 1:
            datamodule.prepare_data()
            datamodule.setup("fit")
    callbacks, logger = trainer.callbacks, trainer.logger
    timer = next(c for c in callbacks if isinstance(c, TrainTimer))
    choices = dict(HydraConfig.get().runtime.choices)
    started = time.time()
    resume = resume_path(cfg)
    if resume is not None:  # Lightning would restore the checkpoint's optimiser (its rate) over changed settings
        check_same_settings(read_checkpoint(resume), model, datamodule)
    try:
        tensorboard.log_run_start(logger, cfg)
        with watch("fit"):
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
        with watch("test"):
            test = trainer.test(model, datamodule=datamodule, verbose=False)[0]  # sync_dist: every process's shard
        if not trainer.is_global_zero:
            return {}  # under DDP, rank 0 alone evaluates and writes
        skipped = None
        if cfg.eval.enabled:  # where it trained: Lightning's teardown has just moved the model to the CPU
            test.update(test_set_metrics(model.to(trainer.strategy.root_device), datamodule, cfg.eval))
            skipped = test.pop("skipped")
    except Exception as err:  # the run folder says why it stopped (the report lists it); the error goes on up
        if trainer.is_global_zero:
            write_failure(cfg, err)
        raise
    timing = timer.summary()
    fit = watch.seconds.pop("fit")  # what of the fit was neither training nor validation (checkpoints, logging, …)
    watch.add("fit_other", max(0.0, fit - timer.this_process))
    timing.update(watch.summary())
    timing["time/total_seconds"] = watch.seconds["startup"] + time.perf_counter() - job_start
    record = run_record(cfg, choices, model, test, timing, trainer.current_epoch)
    record.update(processes=trainer.world_size, threads=torch.get_num_threads(),
                  resumed_from=None if resume is None else str(resume))
    if skipped:
        record["skipped"] = skipped  # each metric the data do not allow, and why
    write_json(Path(cfg.paths.output_dir) / "metrics.json", record)
    log.info("wrote %s: %s", Path(cfg.paths.output_dir) / "metrics.json",
             ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k.startswith("test/") and v is not None))
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
    try:
        write_json(Path(cfg.paths.output_dir) / "metrics.json", record)
    except StorageError as failed:  # a full disk: say so, and let the error that stopped the run go on up
        log.error("%s", failed)


@entry_point("train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the run's objective value (what hydra/sweeper=optuna optimises)."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        record = train(cfg)
    except Exception as err:
        if not multirun:
            raise
        cause = user_error(err)  # the user's to fix: one line; anything else: with its traceback
        log.error("this job failed, the sweep goes on: %s", cause or err, exc_info=cause is None)
        folder_taken = isinstance(cause, RunFolderError)  # the folder and its metrics.json are another run's
        if not folder_taken and not (Path(cfg.paths.output_dir) / "metrics.json").exists():  # refused early
            write_failure(cfg, err)
        record = {"status": "failed"}
    finally:
        job_ended()
    if record.get("status") == "ok":
        print(run_summary(record, cfg.paths.output_dir))
    return objective_value(record, cfg.objective) if record else None  # {}: a DDP process other than rank 0


if __name__ == "__main__":
    main()
