"""The ground-truth interface every factor dataset shares, and its datamodule (grids in factor order)."""

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vae_lab.data.base import DataModule, check_split, constructor_arguments, to_channels
from vae_lab.errors import ConfigError


def grid_factors(index: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """N×K factor values of flat indices in a grid of `sizes` (the last factor varies fastest)."""
    index = np.asarray(index, dtype=np.int64)
    out = np.empty((len(index), len(sizes)), dtype=np.int64)
    for k in range(len(sizes) - 1, -1, -1):
        index, out[:, k] = np.divmod(index, sizes[k])
    return out


class GroundTruth:
    """Factor names and sizes, factor sampling, and images for given factors, on `device`."""

    factor_names: ClassVar[list[str]] = []
    factor_sizes: ClassVar[list[int]] = []
    native_size = 64        # the published images' side
    native_channels = 1     # the published images' channels
    image_sizes = (32, 64)  # 32: the 64 image 2×2-averaged

    def __init__(self, image_size: int = 64, device: torch.device | str = "cpu", channels: int | None = None) -> None:
        if image_size not in self.image_sizes:
            raise ConfigError(f"data.image_size={image_size}: {type(self).__name__} serves {self.image_sizes}")
        self.image_size, self.device = image_size, torch.device(device)
        self.channels = channels or self.native_channels

    def __len__(self) -> int:
        return math.prod(self.factor_sizes)

    def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
        """Flat index of each row of factor values (a mixed-radix number: the last factor varies fastest)."""
        bases = np.cumprod([1, *self.factor_sizes[::-1]])[:-1][::-1]
        return np.asarray(factors, dtype=np.int64) @ bases

    def index_to_factors(self, index: np.ndarray) -> np.ndarray:
        """Factor values of flat indices."""
        return grid_factors(index, self.factor_sizes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n uniformly drawn factor tuples, N×K ints."""
        return np.stack([rng.integers(size, size=n) for size in self.factor_sizes], axis=1)

    def native(self, index: np.ndarray, factors: np.ndarray) -> torch.Tensor:
        """N×C×S×S float images in [0, 1] at the native size, on the device, for flat indices (and their factors)."""
        raise NotImplementedError

    def images(self, factors: np.ndarray | torch.Tensor) -> torch.Tensor:
        """N×C×S×S float images in [0, 1] for N×K factor values (S = image_size, C = the channels asked for)."""
        factors = np.asarray(torch.as_tensor(np.asarray(factors)).cpu(), dtype=np.int64)
        out = self.native(self.factors_to_index(factors), factors)
        if self.image_size != self.native_size:
            out = F.avg_pool2d(out, self.native_size // self.image_size)
        return to_channels(out, self.channels)

    def __getitem__(self, index: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, factors) for flat indices."""
        factors = self.index_to_factors(np.asarray(torch.as_tensor(index).cpu()))
        return self.images(factors), torch.as_tensor(factors, device=self.device)


class FactorSplit(Dataset):
    """A split as flat indices; indexing with a position tensor gives that batch's (images, factors)."""

    def __init__(self, data: GroundTruth, indices: torch.Tensor) -> None:
        self.data, self.indices = data, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data[self.indices[position.cpu()]]


class GroundTruthDataModule(DataModule):
    """Every image is a training image (as in disentanglement_lib); fixed random validation and test images."""

    data_class: type[GroundTruth] = GroundTruth
    image_sizes = GroundTruth.image_sizes

    def __init__(self, name: str | None = None, data_dir: str = "data", batch_size: int = 64, image_size: int = 64,
                 val_size: int = 5000, test_size: int = 10000, split_seed: int = 12345, seed: int = 0,
                 train_subset: int | None = None, download: bool = True, steps_per_batch: int = 1,
                 channels: int | None = None, in_memory: bool = False) -> None:
        channels = channels or self.data_class.native_channels
        super().__init__(constructor_arguments(locals()))
        check_split({"val_size": val_size, "test_size": test_size}, train_subset, math.prod(self.data_class.factor_sizes))
        self.ground_truth: GroundTruth | None = None  # set in setup: what the disentanglement metrics sample from

    def prepare_data(self) -> None:
        """Find, fetch and verify the raw file (once per machine)."""

    def make_ground_truth(self, device: torch.device) -> GroundTruth:
        """The dataset, its images where batches are cut (the training device)."""
        return self.data_class(self.image_size, device, self.channels)

    def setup(self, stage: str | None = None) -> None:
        """Open the data on the training device and fix the validation and test indices."""
        if self.splits:
            return
        self.ground_truth = self.make_ground_truth(self._device())
        total = len(self.ground_truth)
        held_out = torch.randperm(total, generator=torch.Generator().manual_seed(self.hparams.split_seed))
        val, test = held_out[: self.hparams.val_size], held_out[self.hparams.val_size:][: self.hparams.test_size]
        train = torch.arange(total)
        if self.hparams.train_subset:
            train = held_out[-self.hparams.train_subset:]
            val, test = val[: max(1, self.hparams.train_subset // 10)], test[: max(1, self.hparams.train_subset // 10)]
        self.splits = {name: FactorSplit(self.ground_truth, idx) for name, idx in
                       (("train", train), ("val", val), ("test", test))}
