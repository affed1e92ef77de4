"""One LightningDataModule for MNIST and Fashion-MNIST, batching from resident uint8 tensors."""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from vae_lab.data.binarize import Redrawn, binarized, check_binarize
from vae_lab.data.idx import read_idx
from vae_lab.data.sources import ensure_raw
from vae_lab.errors import ConfigError, check_number

TRAIN_IMAGES = 60_000  # the official training set of MNIST and of Fashion-MNIST, before the validation split
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
IMAGE_SIZES = (28, 32, 64)
CHANNELS = (1, 3)
# data.name → the datamodule that serves it (the others: ImageDataModule), for rebuilding one from a checkpoint
DATAMODULES = {
    "shapes2d": "vae_lab.data.shapes2d.Shapes2DDataModule",
    "dsprites": "vae_lab.data.dsprites.DSpritesDataModule",
    "shapes3d": "vae_lab.data.shapes3d.Shapes3DDataModule",
    "mpi3d": "vae_lab.data.mpi3d.MPI3DDataModule",
    "cifar10": "vae_lab.data.cifar10.Cifar10DataModule",
    "images": "vae_lab.data.images.FolderDataModule",
}
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights: colour → grey


class ResidentImages(Dataset):
    """Images and labels held as whole tensors; indexing with an index tensor returns a batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = index.to(self.images.device, non_blocking=True)
        return self.images[index].float().div_(255), self.labels[index]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The random generator of one epoch's shuffle: a function of (seed, epoch) only, so runs resume exactly."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class StepGroups(Dataset):
    """A split indexed by lists of index tensors: one Lightning batch of several steps' batches."""

    def __init__(self, split: Dataset) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, indices: list[torch.Tensor]) -> list[Any]:
        return [self.split[index] for index in indices]


def step_batches(batch: Any) -> list[Any]:
    """The (images, labels) pairs of a Lightning batch: itself, or each of a list of them (data.steps_per_batch)."""
    return list(batch) if isinstance(batch[0], (list, tuple)) else [batch]


def rank_and_world() -> tuple[int, int]:
    """(rank, number of processes) of a torch.distributed job; (0, 1) in a single process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class BatchIndexSampler(Sampler):
    """Yields index tensors, one per batch: a fresh permutation per epoch, no per-sample Python.

    Under DDP each process takes every world-th image of the permutation (Lightning's sampler replacement is
    off: `use_distributed_sampler: false`); shuffled (training) shards are cut to equal length so every process
    runs the same number of steps.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int | None = None, world: int | None = None, group: int = 1) -> None:
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.rank, self.world, self.group = rank, world, group
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning each epoch, so shuffling depends only on (seed, epoch) — resumable."""
        self.epoch = epoch

    def _shard(self) -> tuple[int, int]:
        """This process's rank and the number of processes (given, or from torch.distributed)."""
        rank, world = rank_and_world()
        return (rank if self.rank is None else self.rank), (world if self.world is None else self.world)

    def _shard_size(self) -> int:
        rank, world = self._shard()
        return self.n // world if self.shuffle else len(range(rank, self.n, world))

    def num_batches(self) -> int:
        size = self._shard_size()
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.num_batches() / self.group)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch))
        else:
            order = torch.arange(self.n)
        rank, world = self._shard()
        order = order[rank::world][: self._shard_size()]
        batches = order[: self.num_batches() * self.batch_size].split(self.batch_size)
        if self.group == 1:
            return iter(batches)
        return (list(batches[i : i + self.group]) for i in range(0, len(batches), self.group))


def check_batching(batch_size: int, steps_per_batch: int) -> None:
    """One line for a batch size or steps-per-batch below 1."""
    if batch_size < 1:
        raise ConfigError(f"data.batch_size={batch_size}: must be at least 1")
    if steps_per_batch < 1:
        raise ConfigError(f"data.steps_per_batch={steps_per_batch}: must be at least 1")


def check_split(held_out: dict[str, int], train_subset: int | None, images: int) -> None:
    """One line for a held-out set (`data.val_size`, …) that is empty or leaves no training images, or a training
    subset below 1 or beyond the training images (which would otherwise train on every image, all but a few, or
    silently fewer than asked)."""
    for key, size in held_out.items():
        check_number(f"data.{key}", size, whole=True, minimum=1)
    if sum(held_out.values()) >= images:
        sizes = " + ".join(f"data.{key}={size}" for key, size in held_out.items())
        raise ConfigError(f"{sizes}: must leave training images (there are {images:,} to split)")
    check_number("data.train_subset", train_subset, whole=True, minimum=1, nullable=True)
    if train_subset is not None and train_subset > images - sum(held_out.values()):
        raise ConfigError(f"data.train_subset={train_subset}: there are only {images - sum(held_out.values()):,} "
                          "training images; give fewer, or null for all")


def check_channels(channels: int) -> None:
    """One line unless `data.channels` is 1 (grey) or 3 (colour)."""
    if channels not in CHANNELS:
        raise ConfigError(f"data.channels={channels}: choose 1 (grey) or 3 (colour)")


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """N×C×H×W images (uint8 or float) with `channels` channels: grey repeated into RGB, or RGB weighted to grey."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1:
        return images.expand(-1, channels, -1, -1).contiguous()
    grey = (images.float() * images.new_tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return grey.round_().to(images.dtype) if images.dtype == torch.uint8 else grey.to(images.dtype)


def resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Bring N×1×28×28 uint8 images to image_size: 32 by zero-padding, 64 by bilinear resizing."""
    if image_size == 28:
        return images
    if image_size == 32:
        return F.pad(images, (2, 2, 2, 2))
    return F.interpolate(images.float(), size=image_size, mode="bilinear", align_corners=False).round_().to(torch.uint8)


class ImageDataModule(pl.LightningDataModule):
    """MNIST or Fashion-MNIST: 55k/5k train/val split of the official train set, official test set."""

    def __init__(self, name: str = "mnist", data_dir: str = "data", batch_size: int = 128, image_size: int = 28,
                 val_size: int = 5000, split_seed: int = 12345, seed: int = 0, train_subset: int | None = None,
                 download: bool = True, steps_per_batch: int = 1, channels: int = 1, binarize: str = "none",
                 binarize_seed: int = 777) -> None:
        super().__init__()
        if name not in CLASS_NAMES:
            raise ConfigError(f"data.name={name!r}: choose one of {sorted(CLASS_NAMES)}")
        check_batching(batch_size, steps_per_batch)
        check_binarize(binarize)
        check_channels(channels)
        check_split({"val_size": val_size}, train_subset, TRAIN_IMAGES)
        if image_size not in IMAGE_SIZES:
            raise ConfigError(f"data.image_size={image_size}: choose one of {IMAGE_SIZES}")
        self.save_hyperparameters()
        self.name, self.data_dir, self.batch_size, self.image_size = name, Path(data_dir), batch_size, image_size
        self.channels = channels
        self.class_names = CLASS_NAMES[name]
        self.num_classes = len(self.class_names)
        self.splits: dict[str, ResidentImages] = {}

    def prepare_data(self) -> None:
        """Find, fetch and verify the raw files (once per machine)."""
        ensure_raw(self.data_dir, self.name, download=self.hparams.download)

    def setup(self, stage: str | None = None) -> None:
        """Load the IDX files into uint8 tensors on the training device and cut the splits."""
        if self.splits:
            return
        folder = ensure_raw(self.data_dir, self.name, download=False)
        device = self._device()
        train_x, train_y = self._load(folder, "train", device)
        train_idx, val_idx = (idx.to(device) for idx in self.train_val_indices(len(train_y)))
        mode, seed = self.hparams.get("binarize", "none"), self.hparams.get("binarize_seed", 777)
        fixed_x = train_x if mode == "none" else binarized(train_x, seed)  # data.binarize: drawn once
        self.splits["train"] = ResidentImages((train_x if mode == "dynamic" else fixed_x)[train_idx], train_y[train_idx])
        if mode == "dynamic":
            self.splits["train"] = Redrawn(self.splits["train"])
        self.splits["val"] = ResidentImages(fixed_x[val_idx], train_y[val_idx])
        test_x, test_y = self._load(folder, "t10k", device)
        test_x = test_x if mode == "none" else binarized(test_x, seed + 1)
        if self.hparams.train_subset:
            test_x, test_y = test_x[: self.hparams.train_subset // 10 or 1], test_y[: self.hparams.train_subset // 10 or 1]
        self.splits["test"] = ResidentImages(test_x, test_y)

    def train_val_indices(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Which of the official training set's n images are this module's training and validation images."""
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.split_seed))
        val_idx, train_idx = order[: self.hparams.val_size], order[self.hparams.val_size :]
        if self.hparams.train_subset:
            return train_idx[: self.hparams.train_subset], val_idx[: max(1, self.hparams.train_subset // 10)]
        return train_idx, val_idx

    def _load(self, folder: Path, prefix: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Read one images/labels pair as resident tensors at the configured size."""
        images = torch.from_numpy(read_idx(folder / f"{prefix}-images-idx3-ubyte").copy()).unsqueeze(1)
        labels = torch.from_numpy(read_idx(folder / f"{prefix}-labels-idx1-ubyte").astype("int64"))
        return to_channels(resize(images, self.image_size), self.channels).to(device), labels.to(device)

    def _device(self) -> torch.device:
        """The trainer's device when it is a GPU, else the CPU."""
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        return device if device.type == "cuda" else torch.device("cpu")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """Training batches come `steps_per_batch` at a time (a list), so Lightning's per-batch work is shared.

        The sampler starts at the fit's epoch: a resumed fit builds its iterator, and takes its first batch,
        before Lightning calls `set_epoch`. The loader's own generator gives each iterator its (unused: no workers)
        base seed, which would otherwise be drawn from the global stream the model's noise comes from, at moments
        a resumed run does not repeat.
        """
        data = self.splits[split]
        group = self.hparams.get("steps_per_batch", 1) if split == "train" else 1
        sampler = BatchIndexSampler(len(data), self.batch_size, shuffle, seed=self.hparams.seed, group=group)
        trainer = getattr(self, "trainer", None)
        if trainer is not None:  # the number Lightning passes to set_epoch (current_epoch lags it until the fit starts)
            sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)
        return DataLoader(StepGroups(data) if group > 1 else data, sampler=sampler, batch_size=None,
                          generator=torch.Generator())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


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
