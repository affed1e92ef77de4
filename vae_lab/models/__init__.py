"""Objectives on one shared LightningModule, and loading any of them from a checkpoint."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from vae_lab.errors import CheckpointError
from vae_lab.models.base import BaseVAE


def load_model(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> BaseVAE:
    """Rebuild a vae_lab model from a checkpoint, with clear errors for missing or foreign files."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unreadable file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__})") from err
    target = checkpoint.get("vae_lab_model") if isinstance(checkpoint, dict) else None
    if not target:
        raise CheckpointError(f"{path}: not a vae_lab checkpoint (no model class recorded)")
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    model = cls(**checkpoint["hyper_parameters"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match {name} ({str(err).splitlines()[0]})") from err
    return model.to(map_location).eval()
