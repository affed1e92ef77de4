"""A checkpoint's datamodule rebuilt (its class found by the dataset's name), and the names the rest of vae_lab
imports from here: the base class lives in `base.py`, batching in `batches.py`, MNIST/Fashion-MNIST in `mnist.py`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from vae_lab.data.base import DataModule, to_channels
from vae_lab.data.batches import BatchIndexSampler, ResidentImages, epoch_generator, step_batches
from vae_lab.data.mnist import CLASS_NAMES, MNISTDataModule

ImageDataModule = MNISTDataModule  # the MNIST module's name before base.py and mnist.py (data.name → class below)
__all__ = ["CLASS_NAMES", "BatchIndexSampler", "DataModule", "ImageDataModule", "MNISTDataModule", "ResidentImages",
           "datamodule_class", "datamodule_from_checkpoint", "epoch_generator", "step_batches", "test_datamodule",
           "test_split", "to_channels"]

# data.name → the datamodule that serves it (the others: ImageDataModule), for rebuilding one from a checkpoint
DATAMODULES = {
    "shapes2d": "vae_lab.data.shapes2d.Shapes2DDataModule",
    "dsprites": "vae_lab.data.dsprites.DSpritesDataModule",
    "shapes3d": "vae_lab.data.shapes3d.Shapes3DDataModule",
    "mpi3d": "vae_lab.data.mpi3d.MPI3DDataModule",
    "cifar10": "vae_lab.data.cifar10.Cifar10DataModule",
    "images": "vae_lab.data.images.FolderDataModule",
}


def datamodule_from_checkpoint(checkpoint: dict[str, Any], data_dir: str | Path | None = None,
                               **overrides: Any) -> ImageDataModule:
    """The datamodule a checkpoint was trained with (optionally reading data from elsewhere)."""
    hparams = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    if data_dir is not None:
        hparams["data_dir"] = str(data_dir)
    hparams.update(overrides)
    return datamodule_class(hparams.get("name", "mnist"))(**hparams)


def datamodule_class(name: str) -> type[ImageDataModule]:
    """The datamodule class of a dataset name (imported on demand: the others build on this module)."""
    if name not in DATAMODULES:
        return ImageDataModule
    module, _, cls = DATAMODULES[name].rpartition(".")
    return getattr(importlib.import_module(module), cls)


def test_datamodule(checkpoint: dict[str, Any], data_dir: str | Path | None = None) -> ImageDataModule:
    """A checkpoint's datamodule, set up with its dataset's full test split (its class names or ground truth too)."""
    datamodule = datamodule_from_checkpoint(checkpoint, data_dir, train_subset=None)
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule


def test_split(checkpoint: dict[str, Any], data_dir: str | Path | None = None) -> Dataset:
    """The full test split of a checkpoint's dataset; indexing it with an index tensor gives (images, labels or
    factors)."""
    return test_datamodule(checkpoint, data_dir).splits["test"]
