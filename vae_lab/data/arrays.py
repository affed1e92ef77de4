"""The resident datamodule of labelled (or unlabelled) uint8 image arrays: MNIST, CIFAR-10, a user's own images."""

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vae_lab.data.base import DataModule, check_split, to_channels
from vae_lab.data.batches import ResidentImages

NO_LABEL = -1  # the label of every image of an unlabelled dataset (no model or metric reads it)

Arrays = tuple[torch.Tensor, torch.Tensor]  # N×C×H×W uint8 images, N int64 labels


def resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """N×C×H×W uint8 images at size × size: unchanged, or resized bilinearly (antialiased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


class ArrayDataModule(DataModule):
    """Resident uint8 train (its seeded first `val_size` validate) and test images; subclasses load the arrays."""

    default_channels = 3
    train_images: int | None = None  # the training set's size where it is known before loading (checked at once)

    def __init__(self, settings: dict[str, Any]) -> None:
        """`settings`: the subclass's constructor arguments (`constructor_arguments(locals())`)."""
        super().__init__(settings)
        if self.train_images:
            check_split({"val_size": settings["val_size"]}, settings["train_subset"], self.train_images)
        self.channels = settings["channels"] or self.default_channels
        self.num_classes = self.count_classes()  # known before loading: a CVAE is checked against it

    def val_count(self, n: int) -> int:
        """How many of the n training images validate (data.val_size)."""
        return self.hparams.val_size

    def count_classes(self) -> int | None:
        """The number of classes, cheaply, before the images load (None: unlabelled)."""
        return None

    def load(self) -> tuple[Arrays, Arrays, list[str] | None]:
        """(training arrays, test arrays, class names or None) at the native size, on the CPU."""
        raise NotImplementedError

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """N×C×H×W uint8 images at image_size."""
        return resize_to(images, self.image_size)

    def train_val_indices(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Which of the n training images train and which validate, fixed by data.split_seed."""
        val = self.val_count(n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.split_seed))
        train_idx, val_idx = order[val:], order[:val]
        if self.hparams.train_subset:
            return train_idx[: self.hparams.train_subset], val_idx[: max(1, self.hparams.train_subset // 10)]
        return train_idx, val_idx

    def drawn(self, train_x: torch.Tensor, test_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The images the training, validation and test splits are cut from (a dataset may draw them: binarize)."""
        return train_x, train_x, test_x

    def training_split(self, split: ResidentImages) -> Dataset:
        """The training split as batches read it (a dataset may re-draw it at each read: binarize)."""
        return split

    def setup(self, stage: str | None = None) -> None:
        """Load the arrays once, at the configured size and channels, onto the training device, and cut the splits."""
        if self.splits:
            return
        (train_x, train_y), (test_x, test_y), names = self.load()
        self.class_names, self.num_classes = names, (len(names) if names else None)
        val = self.val_count(len(train_y))
        check_split({"val_size": val}, self.hparams.train_subset, len(train_y))
        device = self._device()
        prepare = lambda x: to_channels(self.resize(x), self.channels).to(device)
        train_x, train_y, test_x, test_y = prepare(train_x), train_y.to(device), prepare(test_x), test_y.to(device)
        train_idx, val_idx = (idx.to(device) for idx in self.train_val_indices(len(train_y)))
        train_x, val_x, test_x = self.drawn(train_x, test_x)
        self.splits["train"] = self.training_split(ResidentImages(train_x[train_idx], train_y[train_idx]))
        self.splits["val"] = ResidentImages(val_x[val_idx], train_y[val_idx])
        if self.hparams.train_subset:
            keep = max(1, self.hparams.train_subset // 10)
            test_x, test_y = test_x[:keep], test_y[:keep]
        self.splits["test"] = ResidentImages(test_x, test_y)
