"""Tiny checkpoints for the explorer's tests: a model as the config builds it (untrained), saved as training would."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate

from tests.conftest import compose_cfg


def tiny_checkpoint(folder: Path, *overrides: str) -> Path:
    """RUN/checkpoints/last.ckpt of a freshly built model (seeded): the keys `load_model` and the data need."""
    cfg = compose_cfg(folder, *overrides)
    torch.manual_seed(0)
    model = instantiate(cfg.model, net=cfg.net, _recursive_=False)
    datamodule = instantiate(cfg.data)
    path = folder / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"vae_lab_model": f"{type(model).__module__}.{type(model).__qualname__}",
                "hyper_parameters": dict(model.hparams), "state_dict": model.state_dict(),
                "datamodule_hyper_parameters": dict(datamodule.hparams)}, path)
    return path
