"""vae_lab: VAE experiments with Lightning and Hydra; the Python API (docs/api.md) is imported on first use."""

import os
import re
from typing import Any

from omegaconf import OmegaConf

from vae_lab.hardware import cpu_precision

__version__ = "0.1.0"
__all__ = ["decode", "encode", "evaluate_checkpoint", "load_data", "load_model", "reconstruct", "sample", "traverse"]
SWEPT = "VAE_LAB_SWEPT"  # the keys a multirun sweeps, comma-separated, for its jobs (vae_lab.sweep.SweepHParams)


def run_name(default: str) -> str:
    """A sweep job's TensorBoard run name: `default`, then its values of the swept keys (`model.beta=4`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    swept = [key for key in os.environ.get(SWEPT, "").split(",") if key]
    job = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task)) if swept else []
    values = {o.key_or_group: o.get_value_element_as_str() for o in job}
    return re.sub(r"[^\w.=+,-]", "_", ",".join([default, *(f"{k}={values[k]}" for k in swept if k in values)]))[:200]


OmegaConf.register_new_resolver("vae_lab.cpu_precision", cpu_precision, replace=True)  # conf/trainer/cpu.yaml
OmegaConf.register_new_resolver("vae_lab.run_name", run_name, replace=True)  # conf/logger/tensorboard.yaml


def __getattr__(name: str) -> Any:
    """Import the API module when one of its functions is first asked for."""
    if name in __all__:
        from vae_lab import api

        return getattr(api, name)
    raise AttributeError(f"module 'vae_lab' has no attribute {name!r}")
