"""Objectives on one shared LightningModule, and loading any of them from a checkpoint."""

from pathlib import Path
from typing import Any

import torch

from vae_lab.checkpoints import read_checkpoint
from vae_lab.errors import CheckpointError, ConfigError
from vae_lab.models.base import MODELS, BaseVAE
from vae_lab.nets import NETS
from vae_lab.registry import HYDRA_KEYS, check_settings

__all__ = ["MODELS", "BaseVAE", "load_model", "model_class", "read_checkpoint"]


def load_model(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> BaseVAE:
    """Rebuild a model in eval mode from its checkpoint, its classes only from vae_lab's own registries."""
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    cls = model_class(path, checkpoint)
    hparams = checkpoint_settings(path, checkpoint, cls)
    try:
        model = cls(**hparams)
    except ConfigError as err:  # a value this version's class refuses (a range)
        raise CheckpointError(f"{path}: its settings do not fit {cls.__name__} ({err})") from None
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match {cls.__name__} ({str(err).splitlines()[0]})") from err
    model.on_load_checkpoint(checkpoint)  # Lightning's hook, as load_from_checkpoint calls it
    return model.to(map_location).eval()


def model_class(path: str | Path, checkpoint: dict[str, Any]) -> type[BaseVAE]:
    """The model class a checkpoint names, looked up by exact name among vae_lab's models (never imported)."""
    try:
        return MODELS.get(checkpoint.get("vae_lab_model"), "model")
    except ConfigError as err:
        raise CheckpointError(f"{path}: its {err}") from None


def checkpoint_settings(path: str | Path, checkpoint: dict[str, Any], cls: type[BaseVAE]) -> dict[str, Any]:
    """A checkpoint's model settings (with its net's), checked against the model's and the net's signatures."""
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or not isinstance(hparams.get("net"), dict):
        raise CheckpointError(f"{path}: records no hyper-parameters (with its net), so {cls.__name__} cannot be rebuilt")
    net = dict(hparams["net"])
    try:
        net_class = NETS.get(net.pop("_target_", None), "net._target_")
        if any(key in net for key in HYDRA_KEYS):
            raise ConfigError(f"net: settings {sorted(k for k in net if k in HYDRA_KEYS)} are not a net's")
        check_settings(net_class, net, "net", given=("latent_dim", "label_dim"))
        check_settings(cls, {k: v for k, v in hparams.items() if k != "net"}, "model", given=("net",))
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return hparams
