"""vae_lab: VAE experiments with Lightning and Hydra; the Python API (docs/api.md) is imported on first use."""

from typing import Any

from omegaconf import OmegaConf

from vae_lab.hardware import cpu_precision

__version__ = "0.1.0"
__all__ = ["decode", "encode", "evaluate_checkpoint", "load_data", "load_model", "reconstruct", "sample", "traverse"]

OmegaConf.register_new_resolver("vae_lab.cpu_precision", cpu_precision, replace=True)  # conf/trainer/cpu.yaml


def __getattr__(name: str) -> Any:
    """Import the API module when one of its functions is first asked for."""
    if name in __all__:
        from vae_lab import api

        return getattr(api, name)
    raise AttributeError(f"module 'vae_lab' has no attribute {name!r}")
