"""The base of every datamodule: shared settings checked, batches cut on the device by one seeded sampler."""

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from vae_lab.data.batches import BatchIndexSampler, StepGroups
from vae_lab.errors import ConfigError, check_number

CHANNELS = (1, 3)
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights: colour → grey


def check_split(held_out: dict[str, int], train_subset: int | None, images: int) -> None:
    """One line for a held-out set that is empty or leaves no training images, or a training subset out of range."""
    for key, size in held_out.items():
        check_number(f"data.{key}", size, whole=True, minimum=1)
    if sum(held_out.values()) >= images:
        sizes = " + ".join(f"data.{key}={size}" for key, size in held_out.items())
        raise ConfigError(f"{sizes}: must leave training images (there are {images:,} to split)")
    check_number("data.train_subset", train_subset, whole=True, minimum=1, nullable=True)
    if train_subset is not None and train_subset > images - sum(held_out.values()):
        raise ConfigError(f"data.train_subset={train_subset}: there are only {images - sum(held_out.values()):,} "
                          "training images; give fewer, or null for all")


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """N×C×H×W images (uint8 or float) with `channels` channels: grey repeated into RGB, or RGB weighted to grey."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1:
        return images.expand(-1, channels, -1, -1).contiguous()
    grey = (images.float() * images.new_tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return grey.round_().to(images.dtype) if images.dtype == torch.uint8 else grey.to(images.dtype)


def constructor_arguments(values: dict[str, Any]) -> dict[str, Any]:
    """A constructor's arguments from its `locals()` taken first thing: the settings a datamodule records."""
    return {key: value for key, value in values.items() if key not in ("self", "__class__")}


class DataModule(pl.LightningDataModule):
    """Every dataset's datamodule: its settings recorded and checked; `setup` fills `splits` the loaders cut."""

    datasets: tuple[str, ...] = ()          # the `data.name`s this class serves (the first is its default)
    image_sizes: tuple[int, ...] = (28, 32, 64)

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__()
        settings = {**settings, "name": settings.get("name") or self.datasets[0]}
        self.save_hyperparameters(settings)
        name, image_size, channels = settings["name"], settings["image_size"], settings["channels"]
        if name not in self.datasets:
            raise ConfigError(f"data.name={name!r}: choose one of {sorted(self.datasets)}")
        for key in ("batch_size", "steps_per_batch"):
            if settings[key] < 1:
                raise ConfigError(f"data.{key}={settings[key]}: must be at least 1")
        if channels is not None and channels not in CHANNELS:
            raise ConfigError(f"data.channels={channels}: choose 1 (grey) or 3 (colour)")
        if image_size not in self.image_sizes:
            raise ConfigError(f"data.image_size={image_size}: data={name} serves {self.image_sizes}")
        self.name, self.data_dir, self.batch_size = name, Path(settings["data_dir"]), settings["batch_size"]
        self.image_size, self.channels = image_size, channels
        self.class_names: list[str] | None = None
        self.num_classes: int | None = None
        self.splits: dict[str, Dataset] = {}

    def _device(self) -> torch.device:
        """The trainer's device when it is a GPU, else the CPU."""
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        return device if device.type == "cuda" else torch.device("cpu")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """Batches `steps_per_batch` at a time; seeded from the fit's epoch so a resumed run draws the same ones."""
        data = self.splits[split]
        group = self.hparams.get("steps_per_batch", 1) if split == "train" else 1
        sampler = BatchIndexSampler(len(data), self.batch_size, shuffle, seed=self.hparams.seed, group=group)
        trainer = getattr(self, "trainer", None)
        if trainer is not None:  # the number Lightning passes to set_epoch (current_epoch lags it until the fit starts)
            sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)
        return DataLoader(StepGroups(data) if group > 1 else data, sampler=sampler, batch_size=None,
                          generator=torch.Generator())  # its base seed: no draw from the model's random stream

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
