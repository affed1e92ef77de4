"""Objectives on one shared LightningModule, and loading any of them from a checkpoint."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from vae_lab.errors import CheckpointError
from vae_lab.models.base import BaseVAE


def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """Load a vae_lab checkpoint's contents on the CPU, with clear errors for missing or foreign files."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}); it may be truncated") from err
    if not isinstance(checkpoint, dict) or not checkpoint.get("vae_lab_model"):
        raise CheckpointError(f"{path}: not a vae_lab checkpoint (no model class recorded)")
    return checkpoint


def load_model(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> BaseVAE:
    """Rebuild a vae_lab model, in eval mode, from its checkpoint."""
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    target = checkpoint["vae_lab_model"]
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    model = cls(**checkpoint["hyper_parameters"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match {name} ({str(err).splitlines()[0]})") from err
    model.on_load_checkpoint(checkpoint)  # Lightning's hook, as load_from_checkpoint calls it
    return model.to(map_location).eval()
