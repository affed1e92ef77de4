"""Objectives on one shared LightningModule, and loading any of them from a checkpoint."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException

from vae_lab.errors import CheckpointError
from vae_lab.models.base import BaseVAE


def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """Load a vae_lab checkpoint's contents on the CPU, with clear errors for missing or foreign files."""
    path = Path(ckpt_path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint; give the file in it (e.g. last.ckpt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}); it may be truncated") from err
    if not isinstance(checkpoint, dict) or not checkpoint.get("vae_lab_model"):
        raise CheckpointError(f"{path}: not a vae_lab checkpoint (no model class recorded)")
    return checkpoint


def model_class(path: Path, target: object) -> type[BaseVAE]:
    """The vae_lab model class a checkpoint names; nothing outside vae_lab is imported."""
    module, _, name = str(target).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name) if module.startswith("vae_lab.") else None
    except (ImportError, AttributeError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, BaseVAE)):
        raise CheckpointError(f"{path}: names the model class {target!r}, which is not a vae_lab model")
    return cls


def load_model(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> BaseVAE:
    """Rebuild a vae_lab model, in eval mode, from its checkpoint."""
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    cls = model_class(path, checkpoint["vae_lab_model"])
    name = cls.__name__
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or not isinstance(hparams.get("net"), dict):
        raise CheckpointError(f"{path}: records no hyper-parameters (with its net), so {name} cannot be rebuilt")
    if not str(hparams["net"].get("_target_")).startswith("vae_lab.nets."):  # instantiating it would run it
        raise CheckpointError(f"{path}: names the net {hparams['net'].get('_target_')!r}, which is not a vae_lab net")
    try:
        model = cls(**hparams)
    except (TypeError, InstantiationException) as err:  # a setting this version's class does not take (or lacks)
        cause = err.__cause__ or err
        raise CheckpointError(f"{path}: its hyper-parameters do not fit {name} ({str(cause).splitlines()[0]})") from err
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match {name} ({str(err).splitlines()[0]})") from err
    model.on_load_checkpoint(checkpoint)  # Lightning's hook, as load_from_checkpoint calls it
    return model.to(map_location).eval()
