"""The checkpoints the explorer may show: named on the command line, or found under the run folder given there."""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from vae_lab.data.mnist import CLASS_NAMES
from vae_lab.errors import CheckpointError, ConfigError
from vae_lab.models import model_class, read_checkpoint
from vae_lab.results.groups import run_settings, shown_keys
from vae_lab.results.names import setting_label
from vae_lab.results.runs import find_run_dirs, read_json_file, run_dir_of


@dataclass(frozen=True)
class Candidate:
    """One checkpoint the page may load, under the name the page shows for it (the page never sees the path)."""

    name: str
    path: Path
    latent_dim: int
    key: tuple = ()  # sort key: model, dataset, the settings that tell the runs apart, seed
    class_names: tuple[str, ...] = ()  # a conditional model's classes
    identity: tuple[str, ...] = ()  # model, net, dataset
    settings: dict = field(default_factory=dict, compare=False)  # its run's settings (vae_lab.results.groups)
    seed: str = "?"


def describe(path: Path) -> Candidate:
    """A checkpoint with its run's identity, settings and seed, named `model · dataset · seed · run folder`."""
    checkpoint = read_checkpoint(path)
    cls = model_class(path, checkpoint)  # only one of vae_lab's models, by exact name
    hparams, data = checkpoint.get("hyper_parameters", {}), checkpoint.get("datamodule_hyper_parameters") or {}
    run = run_dir_of(path)
    record = read_json_file(run / "metrics.json") or {}
    model = str(record.get("model") or cls.__name__.lower())
    dataset = str(record.get("dataset") or data.get("name", "?"))
    identity = (model, str(record.get("net", "?")), dataset)
    try:
        settings = run_settings(run, record)
    except (OSError, ValueError):
        settings = {}
    seed = str(record.get("seed", data.get("seed", "?")))
    default = [str(k) for k in range(int(hparams.get("num_classes", 10)))]
    classes = tuple(CLASS_NAMES.get(data.get("name"), default)) if cls.conditional else ()
    return Candidate(f"{model} · {dataset} · seed {seed} · {run.name}/{path.name}", path,
                     int(hparams.get("latent_dim", 0)), (model, dataset, seed, str(run)), classes, identity,
                     settings, seed)


def named(found: Sequence[Candidate]) -> list[Candidate]:
    """The candidates named with the settings that tell their groups apart (vae_lab.results.groups)."""
    shown = shown_keys((c.identity, c.settings) for c in found)
    renamed = []
    for c in found:
        keys = [setting_label(k, c.settings[k]) for k in shown if c.settings.get(k) is not None]
        place = c.name.rsplit(" · ", 1)[-1]
        renamed.append(replace(c, name=" · ".join([c.identity[0], c.identity[2], *keys, f"seed {c.seed}", place]),
                               key=(c.identity[0], c.identity[2], *map(repr, (c.settings.get(k) for k in shown)),
                                    c.seed, c.key[-1])))
    return renamed


def candidates(ckpt_paths: Sequence[str] | str | None, run: str | None) -> list[Candidate]:
    """The checkpoints given, then those under `run=` sorted by model, dataset, settings and seed."""
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
        found += sorted(named(runs), key=lambda c: c.key)
    found = named(found)
    names = [c.name for c in found]
    if len(set(names)) < len(names):
        raise ConfigError(f"the same checkpoint is given twice: {sorted({n for n in names if names.count(n) > 1})}")
    return found
