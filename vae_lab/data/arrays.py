"""The resident datamodule of any labelled (or unlabelled) uint8 image arrays: CIFAR-10, a user's own images."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from vae_lab.data.datamodule import (
    ImageDataModule,
    ResidentImages,
    check_batching,
    check_channels,
    check_split,
    to_channels,
)
from vae_lab.errors import ConfigError

NO_LABEL = -1  # the label of every image of an unlabelled dataset (no model or metric reads it)

Arrays = tuple[torch.Tensor, torch.Tensor]  # N×C×H×W uint8 images, N int64 labels


def resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """N×C×H×W uint8 images at size × size: unchanged, or resized bilinearly (antialiased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


class ArrayDataModule(ImageDataModule):
    """Images held resident as uint8 tensors on the training device: a training set (its last `val_size` images of
    a fixed seeded permutation for validation) and a test set; subclasses say where the arrays come from."""

    dataset = ""
    image_sizes: tuple[int, ...] = (28, 32, 64)
    default_channels = 3

    def __init__(self, name: str | None = None, data_dir: str = "data", batch_size: int = 128, image_size: int = 32,
                 val_size: int = 5000, split_seed: int = 12345, seed: int = 0, train_subset: int | None = None,
                 download: bool = True, steps_per_batch: int = 1, channels: int | None = None,
                 **source: object) -> None:
        pl.LightningDataModule.__init__(self)  # not ImageDataModule's: no IDX files
        name = name or self.dataset
        self.save_hyperparameters({"name": name, "data_dir": data_dir, "batch_size": batch_size,
                                   "image_size": image_size, "val_size": val_size, "split_seed": split_seed,
                                   "seed": seed, "train_subset": train_subset, "download": download,
                                   "steps_per_batch": steps_per_batch, "channels": channels, **source})
        check_batching(batch_size, steps_per_batch)
        if channels is not None:
            check_channels(channels)
        if image_size not in self.image_sizes:
            raise ConfigError(f"data.image_size={image_size}: data={name} serves {self.image_sizes}")
        self.name, self.data_dir, self.batch_size, self.image_size = name, Path(data_dir), batch_size, image_size
        self.channels = channels or self.default_channels
        self.class_names: list[str] | None = None
        self.num_classes: int | None = self.count_classes()  # known before loading: a CVAE is checked against it
        self.splits: dict[str, ResidentImages] = {}

    def val_count(self, n: int) -> int:
        """How many of the n training images validate (data.val_size)."""
        return self.hparams.val_size

    def count_classes(self) -> int | None:
        """The number of classes, cheaply, before the images load (None: unlabelled)."""
        return None

    def load(self) -> tuple[Arrays, Arrays, list[str] | None]:
        """(training arrays, test arrays, class names or None) at the native size, on the CPU."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Load the arrays once, at the configured size and channels, onto the training device, and cut the splits."""
        if self.splits:
            return
        (train_x, train_y), (test_x, test_y), names = self.load()
        self.class_names, self.num_classes = names, (len(names) if names else None)
        val = self.val_count(len(train_y))
        check_split({"val_size": val}, self.hparams.train_subset, len(train_y))
        device = self._device()
        prepare = lambda x: to_channels(resize_to(x, self.image_size), self.channels).to(device)
        train_x, train_y, test_x, test_y = prepare(train_x), train_y.to(device), prepare(test_x), test_y.to(device)
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(self.hparams.split_seed))
        val_idx, train_idx = order[:val].to(device), order[val:].to(device)
        if self.hparams.train_subset:
            train_idx, val_idx = train_idx[: self.hparams.train_subset], val_idx[: max(1, self.hparams.train_subset // 10)]
        self.splits["train"] = ResidentImages(train_x[train_idx], train_y[train_idx])
        self.splits["val"] = ResidentImages(train_x[val_idx], train_y[val_idx])
        if self.hparams.train_subset:
            keep = max(1, self.hparams.train_subset // 10)
            test_x, test_y = test_x[:keep], test_y[:keep]
        self.splits["test"] = ResidentImages(test_x, test_y)
