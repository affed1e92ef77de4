"""A checkpoint's datamodule rebuilt (its class found by the dataset's name), and the names the rest of vae_lab
imports from here: the base class lives in `base.py`, batching in `batches.py`, MNIST/Fashion-MNIST in `mnist.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from vae_lab.data import datamodule_class
from vae_lab.data.base import DataModule, to_channels
from vae_lab.data.batches import BatchIndexSampler, ResidentImages, epoch_generator, step_batches
from vae_lab.data.mnist import CLASS_NAMES, MNISTDataModule
from vae_lab.registry import check_settings

ImageDataModule = MNISTDataModule  # the MNIST module's name before base.py and mnist.py
__all__ = ["CLASS_NAMES", "BatchIndexSampler", "DataModule", "ImageDataModule", "MNISTDataModule", "ResidentImages",
           "datamodule_class", "datamodule_from_checkpoint", "epoch_generator", "step_batches", "test_datamodule",
           "test_split", "to_channels"]

def datamodule_from_checkpoint(checkpoint: dict[str, Any], data_dir: str | Path | None = None,
                               **overrides: Any) -> DataModule:
    """The datamodule a checkpoint was trained with (optionally reading data from elsewhere): its class looked up by
    the recorded dataset name among vae_lab's own, its settings checked against its signature before it is built."""
    hparams = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    if data_dir is not None:
        hparams["data_dir"] = str(data_dir)
    hparams.update(overrides)
    cls = datamodule_class(hparams.get("name", "mnist"))
    check_settings(cls, hparams, "data")
    return cls(**hparams)


def test_datamodule(checkpoint: dict[str, Any], data_dir: str | Path | None = None) -> DataModule:
    """A checkpoint's datamodule, set up with its dataset's full test split (its class names or ground truth too)."""
    datamodule = datamodule_from_checkpoint(checkpoint, data_dir, train_subset=None)
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule


def test_split(checkpoint: dict[str, Any], data_dir: str | Path | None = None) -> Dataset:
    """The full test split of a checkpoint's dataset; indexing it with an index tensor gives (images, labels or
    factors)."""
    return test_datamodule(checkpoint, data_dir).splits["test"]
