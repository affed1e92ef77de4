"""Objectives on one shared LightningModule, and loading any of them from a checkpoint."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from hydra.errors import InstantiationException

from vae_lab.checkpoints import read_checkpoint
from vae_lab.errors import CheckpointError
from vae_lab.models.base import BaseVAE

__all__ = ["BaseVAE", "load_model", "read_checkpoint"]


def load_model(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> BaseVAE:
    """Rebuild a vae_lab model, in eval mode, from its checkpoint."""
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    cls = model_class(path, checkpoint["vae_lab_model"])
    name = cls.__name__
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or not isinstance(hparams.get("net"), dict):
        raise CheckpointError(f"{path}: records no hyper-parameters (with its net), so {name} cannot be rebuilt")
    check_net_target(path, hparams["net"])
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


def model_class(path: Path, target: object) -> type[BaseVAE]:
    """The model class a checkpoint names: only a BaseVAE from vae_lab.models (importing or calling anything else
    named in a file could run code)."""
    module, _, name = str(target).rpartition(".")
    if not module.startswith("vae_lab.models.") or not name.isidentifier():
        raise CheckpointError(f"{path}: names the model class {target!r}, which is not one of vae_lab.models")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(f"{path}: names the model class {target!r}, which vae_lab.models does not have") from err
    if not (isinstance(cls, type) and issubclass(cls, BaseVAE)):
        raise CheckpointError(f"{path}: names {target!r}, which is not a vae_lab model")
    return cls


def check_net_target(path: Path, net: object) -> None:
    """A checkpoint's net must be one of vae_lab.nets with plain settings: Hydra imports and calls whatever a
    `_target_` names, and a file's nested one could name anything."""
    target = net.get("_target_") if isinstance(net, dict) else None
    if not str(target).startswith("vae_lab.nets."):
        raise CheckpointError(f"{path}: its net {target!r} is not one of vae_lab.nets")
    if any(names_target(value) for value in net.values()):
        raise CheckpointError(f"{path}: its net's settings name classes (`_target_`); vae_lab's nets take none")


def names_target(value: object) -> bool:
    """Whether a `_target_` key is anywhere inside nested dicts and lists."""
    if isinstance(value, dict):
        return "_target_" in value or any(names_target(v) for v in value.values())
    return isinstance(value, (list, tuple)) and any(names_target(v) for v in value)
