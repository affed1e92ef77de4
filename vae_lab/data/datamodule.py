"""A checkpoint's datamodule rebuilt from vae_lab's own classes, its settings checked against the signature."""

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from vae_lab.data import datamodule_class
from vae_lab.data.base import DataModule
from vae_lab.registry import check_settings


def datamodule_from_checkpoint(checkpoint: dict[str, Any], data_dir: str | Path | None = None,
                               **overrides: Any) -> DataModule:
    """The datamodule a checkpoint was trained with (data optionally read from elsewhere), its settings checked."""
    hparams = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    if data_dir is not None:
        hparams["data_dir"] = str(data_dir)
    hparams.update(overrides)
    cls = datamodule_class(hparams.get("name", "mnist"))
    check_settings(cls, hparams, "data")
    return cls(**hparams)


def test_datamodule(checkpoint: dict[str, Any], data_dir: str | Path | None = None, **overrides: Any) -> DataModule:
    """A checkpoint's datamodule (its settings with `overrides`) set up for its test split and its ground truth."""
    datamodule = datamodule_from_checkpoint(checkpoint, data_dir, **overrides)
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule


def test_split(checkpoint: dict[str, Any], data_dir: str | Path | None = None) -> Dataset:
    """The full test split of a checkpoint's dataset, indexed by an index tensor."""
    return test_datamodule(checkpoint, data_dir, train_subset=None).splits["test"]
