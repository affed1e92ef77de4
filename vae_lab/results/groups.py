"""The group rule: a report group is the set of runs whose composed configs differ only in the seed."""

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vae_lab.results.names import key_order

# What a run is, in metrics.json's names: the first columns of every table and the start of every run's name.
IDENTITY = ("model", "net", "dataset")
# The keys that never tell two runs apart, each with why; a key drops everything under it ("callbacks" drops
# "callbacks.images.every_n_epochs"). The second part names metrics.json's fields beside a run's identity, for a run
# without .hydra/config.yaml, whose settings are then its metrics.json's fields.
SAME_EXPERIMENT = {
    "seed": "what a group averages over: the mean and std are over the seeds",
    "data.seed": "`${seed}` in every data config: the seed again",
    "data.data_dir": "where the data's files are read from (the same files wherever they are)",
    "data.download": "whether torchvision's download is tried before the offline sources (the same files)",
    "threads": "torch's thread count: how fast the run goes (a sum's order may change its last bits, as another "
               "machine's would); the other speed options (fused_adam, channels_last, …) do separate groups",
    "ckpt_path": "how a run was started: resuming restores its random state, so it ends where it would have",
    "resume": "as ckpt_path",
    "overwrite": "whether an earlier run in the same folder was cleared first",
    "tags": "labels the user gives a run",
    "paths": "where the files go",
    "hydra": "Hydra's own settings: launcher, output folders, logging",
    "logger": "where the curves go",
    "callbacks": "what is checkpointed and logged while training: the callbacks observe, they do not steer",
    "trainer.enable_progress_bar": "the console's progress bar",
    "trainer.enable_model_summary": "the console's model summary",
    "trainer.log_every_n_steps": "how often curves are logged (and the finite-loss guard looks)",
    "trainer.default_root_dir": "where Lightning writes",
    "objective": "the number a run hands a sweeper: a reading of its results, not a setting",
    "status": "metrics.json: whether the run finished (the report keeps only finished runs)",
    "reason": "metrics.json: why a run failed",
    "params": "metrics.json: the parameter count, which the settings give",
    "resumed_from": "metrics.json: as ckpt_path",
    "skipped": "metrics.json: the metrics the data did not allow, a result",
}
METRIC_PREFIXES = ("test/", "timing/", "time/", "mem/", "kl_dim/")  # metrics.json's results, never settings
CONFIG_FILE = Path(".hydra") / "config.yaml"


def dropped(key: str) -> bool:
    """Whether a dotted key is in SAME_EXPERIMENT or under one of its keys."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in SAME_EXPERIMENT for i in range(1, len(parts) + 1))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as {dotted key: leaf}; a list stays one value."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _resolved(cfg: DictConfig, key: str, raw: Any) -> Any:
    """A leaf's value with interpolations resolved, or as written where it cannot be resolved outside its run."""
    try:
        value = OmegaConf.select(cfg, key)
    except Exception:  # noqa: BLE001 — OmegaConf raises several kinds for a resolver it lacks; the text then
        return raw
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def run_settings(folder: Path, record: Mapping[str, Any]) -> dict[str, Any]:
    """A run's settings: its composed config flattened, less SAME_EXPERIMENT (else metrics.json's fields)."""
    path = folder / CONFIG_FILE
    if path.is_file():
        cfg = OmegaConf.load(path)
        flat = flatten(OmegaConf.to_container(cfg, resolve=False))
        items = ((k, _resolved(cfg, k, v)) for k, v in flat.items() if not dropped(k))
    else:
        items = ((k, v) for k, v in record.items() if k not in IDENTITY and not k.startswith(METRIC_PREFIXES))
    return {k: v for k, v in items if not dropped(k)}


def _comparable(value: Any) -> Any:
    """A setting as groups compare it: numbers as floats (β = 4 and 4.0 are one setting), the rest as JSON."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value if isinstance(value, (bool, str)) or value is None else json.dumps(value, sort_keys=True)


def group_key(identity: Sequence[Any], settings: Mapping[str, Any]) -> tuple:
    """What runs of one group share: their identity and settings (a key only one run has tells it apart)."""
    return (tuple(str(v) for v in identity), tuple(sorted((k, _comparable(v)) for k, v in settings.items())))


def shown_keys(groups: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]) -> list[str]:
    """The settings that differ between two groups of the same model, net and dataset: the extra columns."""
    values: dict[tuple, dict[str, set]] = {}
    groups = [(tuple(str(v) for v in identity), settings) for identity, settings in groups]
    keys: set[str] = set().union(*(settings for _, settings in groups))
    for identity, settings in groups:
        for key in keys:
            value = repr(_comparable(settings[key])) if key in settings else "absent"
            values.setdefault(identity, {}).setdefault(key, set()).add(value)
    return sorted((k for k in keys if any(len(per_key[k]) > 1 for per_key in values.values())), key=key_order)
