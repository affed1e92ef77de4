"""shapes2d: dSprites' factor grid and ordering, rendered by vae_lab itself, one batch at a time on the device.

shape (square, ellipse, heart) × scale (6 values, 0.5…1) × orientation (40 values over 2π) × x (32) × y (32):
737,280 binary 64×64 images, index = ((((shape·6 + scale)·40 + orientation)·32 + x)·32 + y) as in dSprites.
This is our own procedural rendering, not DeepMind's file: 720 base masks (shape × scale × orientation) drawn
once on a 32×32 canvas, then placed at any of 32×32 integer offsets of a 64×64 image.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vae_lab.data.datamodule import ImageDataModule, check_batching, check_split
from vae_lab.errors import ConfigError

FACTOR_NAMES = ["shape", "scale", "orientation", "x", "y"]
FACTOR_SIZES = [3, 6, 40, 32, 32]
SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
CANVAS = 32        # base masks are drawn centred on a CANVAS × CANVAS grid
FULL = 64          # image side; x, y are the canvas's offset in it (0…31)
SUPERSAMPLE = 4    # sub-pixel samples per side when drawing the base masks


def num_images() -> int:
    """737,280: the product of the factor sizes."""
    return int(np.prod(FACTOR_SIZES))


def factors_to_index(factors: np.ndarray) -> np.ndarray:
    """Flat dSprites index of each row of N×5 factor values (the last factor varies fastest)."""
    bases = np.cumprod([1] + FACTOR_SIZES[::-1])[:-1][::-1]
    return np.asarray(factors, dtype=np.int64) @ bases


def index_to_factors(index: np.ndarray) -> np.ndarray:
    """N×5 factor values of flat indices (the inverse of factors_to_index)."""
    index = np.asarray(index, dtype=np.int64)
    out = np.empty((len(index), len(FACTOR_SIZES)), dtype=np.int64)
    for k in range(len(FACTOR_SIZES) - 1, -1, -1):
        index, out[:, k] = np.divmod(index, FACTOR_SIZES[k])
    return out


def _inside(shape: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Whether points (u, v) in the shape's own unit frame (extent about ±1) lie inside it."""
    if shape == "square":
        return (u.abs() <= 0.7) & (v.abs() <= 0.7)
    if shape == "ellipse":
        return (u / 1.0) ** 2 + (v / 0.5) ** 2 <= 1.0
    x, y = u * 1.25, -v * 1.25 + 0.15   # the classic implicit heart, point down, centred
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def base_masks() -> torch.Tensor:
    """The 720 base sprites (shape × scale × orientation), 32×32 floats in {0, 1}, centred on the canvas."""
    n = CANVAS * SUPERSAMPLE
    coords = (torch.arange(n, dtype=torch.float32) + 0.5) / SUPERSAMPLE - CANVAS / 2
    row, col = torch.meshgrid(coords, coords, indexing="ij")
    masks = []
    for shape in SHAPES:
        for scale in SCALES:
            for k in range(FACTOR_SIZES[2]):
                angle = 2 * math.pi * k / FACTOR_SIZES[2]
                radius = 14.0 * scale   # pixels at scale 1: a rotated sprite stays inside the canvas
                u = (col * math.cos(angle) + row * math.sin(angle)) / radius
                v = (-col * math.sin(angle) + row * math.cos(angle)) / radius
                fine = _inside(shape, u, v).float()
                masks.append(F.avg_pool2d(fine[None, None], SUPERSAMPLE)[0, 0] >= 0.5)
    return torch.stack(masks).float()


class Shapes2D:
    """The ground-truth dataset: factor sampling and images for given factors, rendered where the masks live."""

    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES

    def __init__(self, image_size: int = 64, device: torch.device | str = "cpu") -> None:
        if image_size not in (32, 64):
            raise ValueError(f"image_size={image_size}: shapes2d is rendered at 64 or 32")
        self.image_size = image_size
        self.masks = base_masks().to(device)
        self._offsets = torch.arange(FULL, device=device)

    def __len__(self) -> int:
        return num_images()

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n uniformly drawn factor tuples, N×5 ints."""
        return np.stack([rng.integers(size, size=n) for size in FACTOR_SIZES], axis=1)

    def images(self, factors: np.ndarray | torch.Tensor) -> torch.Tensor:
        """N×1×S×S float images in [0, 1] for N×5 factor values (S = image_size; 32 is the 64 image 2×2-averaged)."""
        f = torch.as_tensor(np.asarray(factors), dtype=torch.long, device=self.masks.device)
        base = self.masks[(f[:, 0] * FACTOR_SIZES[1] + f[:, 1]) * FACTOR_SIZES[2] + f[:, 2]]
        rows = self._offsets[None, :] - f[:, 4:5]          # image row r shows canvas row r − y
        cols = self._offsets[None, :] - f[:, 3:4]          # image column c shows canvas column c − x
        valid = ((rows >= 0) & (rows < CANVAS))[:, :, None] & ((cols >= 0) & (cols < CANVAS))[:, None, :]
        picked = base[torch.arange(len(f), device=f.device)[:, None, None],
                      rows.clamp(0, CANVAS - 1)[:, :, None], cols.clamp(0, CANVAS - 1)[:, None, :]]
        out = (picked * valid)[:, None]
        return out if self.image_size == FULL else F.avg_pool2d(out, FULL // self.image_size)

    def __getitem__(self, index: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, factors) for flat dSprites indices."""
        factors = index_to_factors(np.asarray(torch.as_tensor(index).cpu()))
        return self.images(factors), torch.as_tensor(factors, device=self.masks.device)


class ShapesSplit(Dataset):
    """A split of shapes2d as flat indices; indexing with a position tensor renders that batch."""

    def __init__(self, shapes: Shapes2D, indices: torch.Tensor) -> None:
        self.shapes, self.indices = shapes, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.shapes[self.indices[position.cpu()]]


class Shapes2DDataModule(ImageDataModule):
    """shapes2d for training: every image is a training image (as with dSprites); fixed random val/test sets."""

    def __init__(self, name: str = "shapes2d", data_dir: str = "data", batch_size: int = 64, image_size: int = 64,
                 val_size: int = 5000, test_size: int = 10000, split_seed: int = 12345, seed: int = 0,
                 train_subset: int | None = None, download: bool = False, steps_per_batch: int = 1) -> None:
        pl.LightningDataModule.__init__(self)  # not ImageDataModule's: no IDX files, other sizes
        self.save_hyperparameters({k: v for k, v in locals().items() if k != "self"})
        check_batching(batch_size, steps_per_batch)
        check_split({"val_size": val_size, "test_size": test_size}, train_subset, math.prod(FACTOR_SIZES))
        if image_size not in (32, 64):
            raise ConfigError(f"data.image_size={image_size}: shapes2d is rendered at 64 or 32")
        self.name, self.data_dir, self.batch_size, self.image_size = name, Path(data_dir), batch_size, image_size
        self.class_names, self.num_classes = None, None
        self.ground_truth: Shapes2D | None = None
        self.splits: dict[str, ShapesSplit] = {}

    def prepare_data(self) -> None:
        """Nothing to fetch: the images are rendered."""

    def setup(self, stage: str | None = None) -> None:
        """Draw the base masks on the training device and fix the val/test indices."""
        if self.splits:
            return
        self.ground_truth = Shapes2D(self.image_size, self._device())
        generator = torch.Generator().manual_seed(self.hparams.split_seed)
        held_out = torch.randperm(num_images(), generator=generator)
        val, test = held_out[: self.hparams.val_size], held_out[self.hparams.val_size:][: self.hparams.test_size]
        train = torch.arange(num_images())
        if self.hparams.train_subset:
            train = held_out[-self.hparams.train_subset:]
            val, test = val[: max(1, self.hparams.train_subset // 10)], test[: max(1, self.hparams.train_subset // 10)]
        self.splits = {name: ShapesSplit(self.ground_truth, idx) for name, idx in
                       (("train", train), ("val", val), ("test", test))}
