"""Data: raw IDX files, their sources, and the resident-tensor LightningDataModule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vae_lab.data.datamodule import ImageDataModule


def datamodule_from_checkpoint(checkpoint: dict[str, Any], data_dir: str | Path | None = None,
                               **overrides: Any) -> ImageDataModule:
    """The datamodule a checkpoint was trained with (optionally reading data from elsewhere)."""
    hparams = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    if data_dir is not None:
        hparams["data_dir"] = str(data_dir)
    hparams.update(overrides)
    return ImageDataModule(**hparams)
