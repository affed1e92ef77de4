"""A run's results: its metrics.json (contents, written atomically, read back); run reading in submodules."""

import json
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from vae_lab.errors import ConfigError
from vae_lab.files import write_atomically


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write JSON whole or not at all (`write_atomically`): a kill or a full disk never leaves half a file."""
    text = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    write_atomically(path, lambda file: file.write(text))


def read_json(path: Path) -> dict[str, Any]:
    """Read a metrics.json file."""
    return json.loads(Path(path).read_text())


def run_identity(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    """What a run was, in the fields that name it (its groups come from its whole config)."""
    return {
        "model": choices.get("model", cfg.model._target_.rsplit(".", 1)[-1].lower()),
        "net": choices.get("net", cfg.net._target_.rsplit(".", 1)[-1]),
        "dataset": cfg.data.name,
        "beta": float(cfg.model.get("beta", 1.0)),
        "capacity_max": float(cfg.model.get("capacity_max", 0.0)),
        "latent_dim": int(cfg.model.latent_dim),
        "prior_components": int(cfg.model.get("prior_components", 1)),
        "learned_prior": cfg.model.get("learned_prior"),  # CVAEs: p(z|y) learned or N(0, I); null for the others
        "lr": float(cfg.model.lr),
        "image_size": int(cfg.data.image_size),
        "train_subset": cfg.data.get("train_subset"),  # set: trained on that many images, tested on a tenth as many
        "seed": int(cfg.seed),
    }


def run_record(cfg: DictConfig, choices: dict[str, str], model: torch.nn.Module, test: dict[str, float],
               timing: dict[str, float], epochs: int) -> dict[str, Any]:
    """The flat metrics.json record of one finished training run."""
    record = run_identity(cfg, choices)
    record.update(epochs=int(epochs), params=sum(p.numel() for p in model.parameters() if p.requires_grad), status="ok")
    record.update({k: _number(v) for k, v in test.items() if not k.startswith("kl_dim/")})
    record.update(timing)
    return record


def failed_record(cfg: DictConfig, choices: dict[str, str], reason: str) -> dict[str, Any]:
    """The metrics.json of a run that stopped early: what it was, `status: failed` and why."""
    return {**run_identity(cfg, choices), "status": "failed", "reason": reason}


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def objective_value(record: dict[str, Any], objective: DictConfig) -> float:
    """What a sweeper optimises: objective.metric, or the worst value for a failed run or a missed constraint."""
    worst = math.inf if objective.direction == "minimize" else -math.inf
    if record.get("status") != "ok":
        return worst
    bound = objective.constraint
    for key, metric in (("objective.metric", objective.metric), ("objective.constraint.metric", bound.metric)):
        if metric and metric not in record:  # a typo, or eval.enabled=false: every run would score the worst
            raise ConfigError(f"{key}={metric!r} is not in metrics.json; choose one of "
                              f"{sorted(k for k, v in record.items() if isinstance(v, (int, float)))}")
    if bound.metric and (record.get(bound.metric) is None or record[bound.metric] < bound.min):
        return worst
    return worst if record[objective.metric] is None else float(record[objective.metric])

