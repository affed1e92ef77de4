"""The Python API for notebooks: the functions the entry points use, under short names (see docs/api.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vae_lab.data import DATAMODULES
from vae_lab.data.datamodule import datamodule_from_checkpoint
from vae_lab.errors import ConfigError
from vae_lab.evaluate import evaluate_checkpoint
from vae_lab.models import load_model, read_checkpoint
from vae_lab.models.base import BaseVAE
from vae_lab.models.likelihood import mean_image
from vae_lab.viz.grids import traversal

CONF = Path(__file__).resolve().parents[1] / "conf"
SPLITS = ("train", "val", "test")

__all__ = ["decode", "encode", "evaluate_checkpoint", "load_data", "load_model", "reconstruct", "sample", "traverse"]


def datamodule(source: str | Path, data_dir: str | Path | None = None, **overrides: Any) -> Any:
    """The set-up datamodule of a checkpoint (`RUN/checkpoints/last.ckpt`) or of a `conf/data/` option (`"mnist"`)."""
    if Path(source).suffix == ".ckpt":
        module = datamodule_from_checkpoint(read_checkpoint(source), data_dir, **overrides)
    else:
        options = [f"data={source}", f"paths.data_dir={Path(data_dir or 'data').resolve()}", "paths.root_dir=.",
                   "paths.output_dir=."]
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=options)
        cfg.data.update(overrides)
        module = DATAMODULES.build(OmegaConf.to_container(cfg.data, resolve=True), "data")
    module.prepare_data()
    module.setup("fit")
    return module


def load_data(source: str | Path, split: str = "test", data_dir: str | Path | None = None,
              n: int | None = None, **overrides: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as tensors `(x, y)`: x float32 N×C×H×W in [0, 1], y labels (or factor indices); the first n if given."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: choose one of {SPLITS}")
    data = datamodule(source, data_dir, **overrides).splits[split]
    index = torch.arange(len(data) if n is None else min(n, len(data)))
    return data[index]


@torch.no_grad()
def encode(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z|x[, y]) as (μ, log σ²), each N×latent_dim."""
    return model.encode(x.to(model.device), _on(model, y))


@torch.no_grad()
def decode(model: BaseVAE, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """The decoder's mean images in [0, 1] for codes z (and labels y for a conditional model)."""
    return mean_image(model.decode(z.to(model.device), _on(model, y)))


def sample(model: BaseVAE, n: int = 16, label: int | None = None, temperature: float = 1.0) -> torch.Tensor:
    """n images from the prior (of class `label` for a CVAE; a CVAE cycles through its classes without one)."""
    labels = None if label is None else torch.full((n,), int(label), device=model.device)
    return model.generate(n, labels=labels, temperature=temperature)


def reconstruct(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """The deterministic reconstruction: the decoder's mean at the posterior mean."""
    return model.reconstruct(x.to(model.device), _on(model, y))


def traverse(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None = None, steps: int = 9,
             span: float = 3.0) -> tuple[torch.Tensor, list[int]]:
    """One row of `steps` images per latent (the first image's μ, that latent moved over −span…span), and the latents'
    order (most per-dimension KL over the images x first), as the traversal grids in TensorBoard and
    `generate mode=traverse` draw them (which keep one row for a model with no active unit)."""
    t = traversal(model, x, y if model.conditional else None, steps=steps, span=span, collapsed_rows=None)
    return t.images, t.dims


def _on(model: BaseVAE, y: torch.Tensor | None) -> torch.Tensor | None:
    """Labels on the model's device, or None for an unconditional model (which ignores them)."""
    return y.to(model.device) if y is not None and model.conditional else None
