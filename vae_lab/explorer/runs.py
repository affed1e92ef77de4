"""The checkpoints the explorer may show: named on the command line, or found under the run folder given there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vae_lab.data.datamodule import CLASS_NAMES
from vae_lab.errors import CheckpointError, ConfigError
from vae_lab.models import model_class, read_checkpoint
from vae_lab.report import find_run_dirs
from vae_lab.results import read_json


@dataclass(frozen=True)
class Candidate:
    """One checkpoint the page may load, under the name the page shows for it (the page never sees the path)."""

    name: str
    path: Path
    latent_dim: int
    key: tuple = ()  # sort key: model, dataset, β, seed
    class_names: tuple[str, ...] = ()  # a conditional model's classes


def describe(path: Path) -> Candidate:
    """A checkpoint's page name, `model · dataset · β · seed · run folder`, from its run's metrics.json or itself."""
    checkpoint = read_checkpoint(path)
    cls = model_class(path, checkpoint)  # only one of vae_lab's models, by exact name
    hparams, data = checkpoint.get("hyper_parameters", {}), checkpoint.get("datamodule_hyper_parameters") or {}
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    record = {}
    if (run / "metrics.json").is_file():
        try:
            record = read_json(run / "metrics.json")
        except (OSError, ValueError):
            record = {}
    model = str(record.get("model") or cls.__name__.lower())
    dataset = str(record.get("dataset") or data.get("name", "?"))
    beta = float(record.get("beta", hparams.get("beta", 1.0)))
    seed = record.get("seed", data.get("seed", "?"))
    name = f"{model} · {dataset} · β={beta:g} · seed {seed} · {run.name}/{path.name}"
    conditional = cls.conditional
    default = [str(k) for k in range(int(hparams.get("num_classes", 10)))]
    classes = tuple(CLASS_NAMES.get(data.get("name"), default)) if conditional else ()
    return Candidate(name, path, int(hparams.get("latent_dim", 0)), (model, dataset, beta, str(seed), str(run)), classes)


def candidates(ckpt_paths: Sequence[str] | str | None, run: str | None) -> list[Candidate]:
    """The checkpoints given (`ckpt_path=A` or `[A,B]`), then those under `run=` (each run's checkpoints/last.ckpt),
    the latter sorted by model, dataset, β and seed."""
    paths = [ckpt_paths] if isinstance(ckpt_paths, (str, Path)) else list(ckpt_paths or [])
    if not paths and not run:
        raise ConfigError("give ckpt_path=RUN/checkpoints/last.ckpt (or ckpt_path=[A,B]) or run=RUN_OR_MULTIRUN_FOLDER")
    found = [describe(Path(p)) for p in paths]
    if run:
        root = Path(run)
        if not root.is_dir():
            raise ConfigError(f"run={run}: no such folder")
        lasts = [d / "checkpoints" / "last.ckpt" for d in find_run_dirs(root)]
        runs = []
        for path in (p for p in lasts if p.is_file()):
            try:
                runs.append(describe(path))
            except CheckpointError:
                continue  # a run killed mid-write: the page lists the others
        if not runs:
            raise ConfigError(f"run={run}: holds no run with a readable checkpoints/last.ckpt")
        found += sorted(runs, key=lambda c: c.key)
    names = [c.name for c in found]
    if len(set(names)) < len(names):
        raise ConfigError(f"the same checkpoint is given twice: {sorted({n for n in names if names.count(n) > 1})}")
    return found
