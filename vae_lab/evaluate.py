"""`python -m vae_lab.evaluate ckpt_path=…`: the full test-set evaluation of any checkpoint, into metrics.json."""

import inspect
import resource
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from vae_lab.cli import entry_point, output_folder, require
from vae_lab.data.base import DataModule
from vae_lab.data.datamodule import datamodule_from_checkpoint
from vae_lab.errors import ConfigError, check_number
from vae_lab.metrics import evaluate_model
from vae_lab.metrics.classifier import fid_cache, get_classifier
from vae_lab.metrics.disentanglement import BOOSTERS
from vae_lab.metrics.ground_truth import disentanglement_metrics
from vae_lab.metrics.likelihood import check_precision
from vae_lab.models import load_model, model_class, read_checkpoint
from vae_lab.models.base import BaseVAE
from vae_lab.results import read_json, write_json
from vae_lab.results.runs import run_dir_of
from vae_lab.timing import Stopwatch
from vae_lab.viz.projector import write_projector

IMAGE_KEYS = set(inspect.signature(evaluate_model).parameters) - {"model", "datamodule", "classifier", "watch",
                                                                  "fid_cache"}
GROUND_TRUTH_KEYS = set(inspect.signature(disentanglement_metrics).parameters) - {"model", "data"}
EVAL_KEYS = IMAGE_KEYS | GROUND_TRUTH_KEYS
ACCELERATORS = ("auto", "cpu", "gpu")
CLASSIFIER_KEYS = {"train_subset", "cache_dir", "epochs", "width", "augment", "batch_size", "lr", "seed", "max_steps"}


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: GPU memory allocated on a GPU, resident host memory otherwise."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def eval_options(options: DictConfig | dict | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split `eval.*` into evaluate_model's and the classifier's keyword arguments, rejecting unknown keys."""
    opts = OmegaConf.to_container(options, resolve=True) if isinstance(options, DictConfig) else dict(options or {})
    opts.pop("enabled", None)
    classifier = dict(opts.pop("classifier", None) or {})
    unknown = (set(opts) - EVAL_KEYS) | {f"classifier.{k}" for k in set(classifier) - CLASSIFIER_KEYS}
    if unknown:
        raise ConfigError(f"unknown eval option(s) {sorted(unknown)}; allowed: {sorted(EVAL_KEYS)} and "
                          f"classifier.{{{', '.join(sorted(CLASSIFIER_KEYS))}}}")
    check_precision(opts.get("iwae_precision", "fp32"))
    if opts.get("dci_booster", "exact") not in BOOSTERS:
        raise ConfigError(f"eval.dci_booster={opts['dci_booster']!r}: choose one of {BOOSTERS}")
    for key, value in opts.items():  # every other option is a count (or a seed)
        if key in ("iwae_precision", "dci_booster"):
            continue
        check_number(f"eval.{key}", value, whole=True, minimum=0 if key.endswith("seed") else 1,
                     nullable=key == "max_test_images")
    return opts, classifier


def _pick(options: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in keys}


CLASS_METRICS = ("test/fid", "test/class_entropy", "test/probe_accuracy", "test/cond_accuracy", "test/mig",
                 "test/sap", "test/dci_completeness", "test/dci_informativeness", "test/explicitness")
IMAGE_ONLY_METRICS = ("test/mse", "test/nll_iwae", "test/active_units")


def test_set_metrics(model: BaseVAE, datamodule: DataModule, options: DictConfig | dict | None) -> dict[str, Any]:
    """Every metric the data allow, with time, peak memory and `skipped`: each metric left out and why."""
    opts, classifier_opts = eval_options(options)
    start = time.perf_counter()
    watch = Stopwatch()
    datamodule.setup()  # a no-op once set up
    ground_truth, name = getattr(datamodule, "ground_truth", None), datamodule.name
    if ground_truth is not None:
        with watch("disentanglement"):
            metrics: dict[str, Any] = disentanglement_metrics(model, ground_truth, **_pick(opts, GROUND_TRUTH_KEYS))
        metrics.update(watch.summary())
        why = f"data={name} has ground-truth factors and no class labels: it is scored by the disentanglement metrics"
        skipped = dict.fromkeys(CLASS_METRICS[:4] + IMAGE_ONLY_METRICS, why)
    elif getattr(datamodule, "num_classes", None):
        with watch("classifier"):  # loaded from its cache, or trained once for every later run
            classifier = get_classifier(datamodule.data_dir, name, model.device, datamodule=datamodule,
                                        **classifier_opts)
        metrics = evaluate_model(model, datamodule, classifier, watch=watch, fid_cache=fid_cache(classifier),
                                 **_pick(opts, IMAGE_KEYS))
        skipped = {"disentanglement metrics": f"data={name} has no ground-truth factors"}
    else:
        metrics = evaluate_model(model, datamodule, None, watch=watch, **_pick(opts, IMAGE_KEYS))
        skipped = {**dict.fromkeys(CLASS_METRICS, f"data={name} has no class labels (no classifier to train, "
                                                  "no class to probe or condition on)"),
                   "disentanglement metrics": f"data={name} has no ground-truth factors"}
    metrics["time/eval_seconds"] = time.perf_counter() - start
    metrics["mem/peak_mb"] = peak_memory_mb(model.device)
    metrics["skipped"] = skipped
    return metrics


def test_trainer(accelerator: str, precision: str) -> pl.Trainer:
    """The Trainer of the test-loss pass: on the GPU when there is one (`auto`) or asked for (`gpu`), else the CPU."""
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"accelerator={accelerator!r}: choose one of {ACCELERATORS}")
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError("accelerator=gpu: this machine has no CUDA GPU; use accelerator=cpu or auto")
    on_gpu = accelerator != "cpu" and torch.cuda.is_available()
    try:
        return pl.Trainer(accelerator="gpu" if on_gpu else "cpu", devices=1, logger=False, precision=precision,
                          enable_checkpointing=False, enable_model_summary=False)
    except ValueError as err:  # Lightning's word on an unknown precision, which lists the valid ones
        raise ConfigError(f"precision={precision!r}: {err}") from err


def output_record(out: Path, key: str) -> dict[str, Any] | None:
    """Check the results file can be written and one already there is whole, before any work; its record."""
    output_folder(key, out)
    if not out.is_file():
        return None
    try:
        record = read_json(out)
    except (ValueError, OSError) as err:
        raise ConfigError(f"{out}: unreadable ({str(err).splitlines()[0]}: a half-written file?); "
                          "move it away or give out=OTHER.json") from err
    if not isinstance(record, dict):
        raise ConfigError(f"{out}: not a JSON object; move it away or give out=OTHER.json")
    return record


def evaluate_checkpoint(ckpt_path: str | Path, options: DictConfig | dict | None = None,
                        data_dir: str | Path | None = None, accelerator: str = "auto",
                        precision: str = "32-true", projector_images: int = 0,
                        projector_dir: str | Path | None = None) -> dict[str, Any]:
    """Test loss terms and every metric the checkpoint's data allow, `skipped`, and optional Projector images."""
    checkpoint = read_checkpoint(ckpt_path)
    eval_options(options)  # a bad option fails here, before anything loads
    trainer = test_trainer(accelerator, precision)
    model = load_model(ckpt_path, "cuda" if trainer.strategy.root_device.type == "cuda" else "cpu")
    datamodule = datamodule_from_checkpoint(checkpoint, data_dir, train_subset=None)
    datamodule.prepare_data()  # the test images found and verified before the work
    test = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    metrics = {k: float(v) for k, v in test.items() if not k.startswith("kl_dim/")}
    metrics.update(test_set_metrics(model.to(trainer.strategy.root_device), datamodule, options))
    folder = Path(projector_dir or run_dir_of(Path(ckpt_path)) / "tensorboard")
    ground_truth = getattr(datamodule, "ground_truth", None)
    logged = write_projector(folder, model, datamodule.splits["test"], projector_images,
                             int(checkpoint.get("global_step", 0)), datamodule.class_names,
                             ground_truth.factor_names if ground_truth is not None else None)
    if logged:
        print(f"TensorBoard Projector: {logged} test images' encoder means in {folder}")
    return metrics  # with `skipped`: each metric the data do not allow, and why


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate a checkpoint and merge the metrics into its run's metrics.json (or `out`)."""
    require(cfg, "ckpt_path", "RUN/checkpoints/last.ckpt")
    ckpt_path = Path(cfg.ckpt_path)
    model_name = model_class(ckpt_path, read_checkpoint(ckpt_path)).__name__.lower()
    options, _ = eval_options(cfg.eval)
    check_number("projector.images", cfg.projector.images, whole=True, minimum=0)
    test_trainer(cfg.accelerator, cfg.precision)  # a bad accelerator or precision fails before any work
    out = Path(cfg.out) if cfg.out else run_dir_of(ckpt_path) / "metrics.json"
    record = output_record(out, "out")  # writable, and a metrics.json already there whole, before any work
    metrics = evaluate_checkpoint(ckpt_path, cfg.eval, cfg.data_dir, cfg.accelerator, cfg.precision,
                                  cfg.projector.images, cfg.projector.dir)
    skipped = metrics.pop("skipped")
    record = record or {"model": model_name, "status": "ok"}
    record.update(metrics)
    record.update({f"eval/{k}": v for k, v in options.items()})  # how it was measured (the rest: defaults)
    record["skipped"] = skipped
    write_json(out, record)
    for key in sorted(metrics):
        print(f"{key:32s} {metrics[key]:.4f}")
    for key, why in skipped.items():
        print(f"{key:32s} skipped: {why}")
    print(f"wrote {out}")
    return record


main = entry_point("evaluate")(evaluate)  # python -m vae_lab.evaluate


if __name__ == "__main__":
    main()
