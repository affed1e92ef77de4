"""`python -m vae_lab.timing_pass DIR [DIR ...]`: every arm timed in interleaved windows into timing.json."""

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra import compose
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vae_lab.cli import entry_point, lightning_quiet, positional_dirs
from vae_lab.errors import ConfigError, check_number
from vae_lab.evaluate import eval_options
from vae_lab.metrics import evaluate_model
from vae_lab.metrics.classifier import fid_cache, get_classifier
from vae_lab.metrics.samples import timed_generation
from vae_lab.models import load_model
from vae_lab.results import write_json
from vae_lab.results.groups import IDENTITY, shown_keys
from vae_lab.results.runs import PREVIOUS_FILE, TIMING_FILE, agreement_line, collect, group_runs
from vae_lab.timing import StepClock, device_name, spread, throughput
from vae_lab.train import build


def check_options(options: DictConfig) -> None:
    """One line for a bad `timing_options.*`, before anything is timed."""
    for key in ("warmup_steps", "steps", "repeats", "sample_images", "batch_size", "eval_images"):
        check_number(f"timing_options.{key}", options[key], whole=True, minimum=1)
    check_number("timing_options.threads", options.threads, whole=True, minimum=1, nullable=True)


def run_overrides(run: Path) -> list[str]:
    """The overrides a run was made with (`.hydra/overrides.yaml`), less the thread count."""
    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        raise ConfigError(f"timing pass: {path} is missing, so the arm's config cannot be rebuilt")
    return [o for o in OmegaConf.to_container(OmegaConf.load(path)) if not o.lstrip("+~").startswith("threads=")]


class Arm:
    """One report group: its config, data, a model to train, its trained model, and each window's rate."""

    def __init__(self, name: str, group: dict[str, Any], run: Path, cfg: DictConfig,
                 datamodules: dict[str, Any]) -> None:
        self.name, self.group, self.run, self.cfg = name, group, run, cfg
        key = OmegaConf.to_yaml(cfg.data, resolve=True)  # arms on the same data share its resident images
        self.datamodule, self.model, _ = build(cfg, callbacks=[], logger=False)
        self.datamodule = datamodules.setdefault(key, self.datamodule)
        self.datamodule.prepare_data()
        self.datamodule.setup("fit")
        self.device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
        ckpt = run / "checkpoints" / "last.ckpt"
        self.trained = load_model(ckpt, self.device) if ckpt.is_file() else None
        self.windows: dict[str, list[float]] = {"train": [], "sample": [], "eval": []}
        self.classifier = None

    def train_window(self, warmup: int, steps: int) -> None:
        """One fit of warm-up + timed steps from the last window's weights: the timed steps' images/s."""
        clock = StepClock()
        trainer = instantiate(self.cfg.trainer, callbacks=[clock], logger=False, max_steps=warmup + steps,
                              max_epochs=-1, enable_checkpointing=False, limit_val_batches=0,
                              enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(self.model, datamodule=self.datamodule)
        self.windows["train"].append(throughput(clock.marks, warmup, 1, steps)["median"])

    def evaluated(self) -> torch.nn.Module:
        """The model sampling and evaluation are timed on: the run's trained one, else the one trained here."""
        return (self.trained or self.model).to(self.device)

    def sample_window(self, images: int, batch_size: int) -> None:
        """Prior samples as the evaluation draws them (a warm-up batch first): images/s."""
        self.windows["sample"].append(timed_generation(self.evaluated(), images, batch_size)[1])

    def eval_options(self, images: int) -> dict[str, Any]:
        """The run's evaluation options, every count scaled to `images` test images."""
        options, classifier = eval_options(self.cfg.eval)
        options = {k: v for k, v in options.items() if k not in ("max_test_images", "fid_samples", "per_class",
                                                                 "probe_train_images")}
        if self.classifier is None:
            data = self.datamodule
            self.classifier = get_classifier(data.data_dir, data.name, self.device, datamodule=data, **classifier)
            self.fid_cache = fid_cache(self.classifier)
        classes = int(getattr(self.evaluated(), "num_classes", 10))
        return {**options, "max_test_images": images, "fid_samples": images, "per_class": max(1, images // classes),
                "probe_train_images": images}

    def eval_window(self, images: int) -> None:
        """The whole evaluation on the first `images` test images: seconds per 10,000."""
        options = self.eval_options(images)
        start = time.perf_counter()
        evaluate_model(self.evaluated(), self.datamodule, self.classifier, fid_cache=self.fid_cache, **options)
        self.windows["eval"].append((time.perf_counter() - start) * 10_000 / images)

    def warm_up(self, options: DictConfig) -> None:
        """Untimed: one of each window at a small size (kernels, the classifier, the cached FID statistics)."""
        self.train_window(options.warmup_steps, 1)
        self.sample_window(min(options.sample_images, 200), 100)
        self.eval_window(min(options.eval_images, 100))
        self.windows = {name: [] for name in self.windows}

    def result(self) -> dict[str, Any]:
        """This arm's timing.json entry: median, min and max over its windows."""
        train = spread(self.windows["train"])
        images = len(self.datamodule.splits["train"])
        epoch = {k: images / v for k, v in zip(("median", "max", "min"), (train["median"], train["min"], train["max"]))}
        return {"name": self.name, "group": self.group, "run": str(self.run), "train_images": images,
                "train_images_per_second": train, "epoch_seconds": epoch,
                "sample_images_per_second": spread(self.windows["sample"]),
                "eval_seconds_per_10k": spread(self.windows["eval"]), "windows": self.windows}


def timing_pass(arms: Sequence[tuple[str, dict[str, Any], Path]], options: DictConfig, out: Path) -> Path:
    """Time every (name, group, run folder) arm in interleaved windows and write `out/timing.json`."""
    check_options(options)
    if options.threads:
        torch.set_num_threads(int(options.threads))
    datamodules: dict[str, Any] = {}
    built = []
    with lightning_quiet():
        for name, group, run in arms:  # every arm composed and built before any is timed
            cfg = compose("train", overrides=run_overrides(run), return_hydra_config=False)
            built.append(Arm(name, group, run, cfg, datamodules))
        for arm in built:
            print(f"timing pass: warming up {arm.name}", flush=True)
            arm.warm_up(options)
        for repeat in range(options.repeats):
            for arm in built:  # each arm's windows in turn, then the next arm's: the load's changes hit all alike
                arm.train_window(options.warmup_steps, options.steps)
                arm.sample_window(options.sample_images, options.batch_size)
                arm.eval_window(options.eval_images)
            print(f"timing pass: round {repeat + 1} of {options.repeats} done", flush=True)
    path = out / TIMING_FILE
    record = {"device": device_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "options": OmegaConf.to_container(options), "arms": [arm.result() for arm in built]}
    if path.is_file():  # the pass before this one: kept as timing_previous.json, and the two compared
        previous = path.with_name(PREVIOUS_FILE)
        path.replace(previous)
        record["agreement"] = agreement(json.loads(previous.read_text())["arms"], record["arms"])
        print(agreement_line(record["agreement"]), flush=True)
    write_json(path, record)
    return path


def agreement(before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Two passes' agreement: rate ratios, largest difference, and reversals of arms either tells apart."""
    first = {arm["name"]: arm["train_images_per_second"] for arm in before}
    second = {arm["name"]: arm["train_images_per_second"] for arm in after}
    common = [name for name in second if name in first]
    ratios = {name: second[name]["median"] / first[name]["median"] for name in common}
    reversals = [[a, b] for i, a in enumerate(common) for b in common[i + 1:]
                 if _order(first[a], first[b]) * _order(second[a], second[b]) < 0
                 and (_apart(first[a], first[b]) or _apart(second[a], second[b]))]
    return {"ratios": ratios, "max_difference": max((abs(r - 1) for r in ratios.values()), default=0.0),
            "same_ranking": not reversals, "reversals": reversals, "arms": len(common)}


def _order(a: dict[str, float], b: dict[str, float]) -> int:
    """+1 if a's median rate is above b's, −1 if below, 0 if equal."""
    return (a["median"] > b["median"]) - (a["median"] < b["median"])


def _apart(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two arms' windows do not overlap (one's slowest above the other's fastest); medians alone, if no spread."""
    low_a, high_a = a.get("min", a["median"]), a.get("max", a["median"])
    low_b, high_b = b.get("min", b["median"]), b.get("max", b["median"])
    return low_a > high_b or low_b > high_a


def timed_arms(dirs: Sequence[str]) -> list[tuple[str, dict[str, Any], Path]]:
    """The report's groups under the folders, one run each (its lowest seed): (name, group, run folder)."""
    runs, _ = collect(dirs)
    groups = [g for g in group_runs(runs) if not g.repeat]  # a repeat has its group's settings: one arm for both
    shown = shown_keys((g.first.identity, g.first.settings) for g in groups)
    return [(g.first.path.name, {**dict(zip(IDENTITY, g.first.identity)),
                                 **{k: g.first.settings.get(k) for k in shown}}, g.first.path) for g in groups]


@entry_point("timing_pass")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: time the arms of the runs under `dirs` into the first folder's timing.json."""
    dirs = [cfg.dirs] if isinstance(cfg.dirs, str) else [str(d) for d in cfg.dirs or []]
    print(f"wrote {timing_pass(timed_arms(dirs), cfg.timing_options, Path(dirs[0]))}")


if __name__ == "__main__":
    sys.argv[1:] = positional_dirs(sys.argv[1:])
    main()
