"""shapes2d: dSprites' factor grid and ordering, rendered by vae_lab itself, one batch at a time on the device.

shape (square, ellipse, heart) × scale (6 values, 0.5…1) × orientation (40 values over 2π) × x (32) × y (32):
737,280 binary 64×64 images, index = ((((shape·6 + scale)·40 + orientation)·32 + x)·32 + y) as in dSprites.
This is our own procedural rendering, not DeepMind's file: 720 base masks (shape × scale × orientation) drawn
once on a 32×32 canvas, then placed at any of 32×32 integer offsets of a 64×64 image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from vae_lab.data.ground_truth import FactorSplit, GroundTruth, GroundTruthDataModule, grid_factors, grid_index
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
    return grid_index(factors, FACTOR_SIZES)


def index_to_factors(index: np.ndarray) -> np.ndarray:
    """N×5 factor values of flat indices (the inverse of factors_to_index)."""
    return grid_factors(index, FACTOR_SIZES)


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


class Shapes2D(GroundTruth):
    """The ground-truth dataset: factor sampling and images for given factors, rendered where the masks live."""

    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES

    def __init__(self, image_size: int = 64, device: torch.device | str = "cpu", channels: int | None = None) -> None:
        if image_size not in self.image_sizes:
            raise ValueError(f"image_size={image_size}: shapes2d is rendered at 64 or 32")
        super().__init__(image_size, device, channels)
        self.masks = base_masks().to(device)
        self._offsets = torch.arange(FULL, device=device)

    def native(self, index: np.ndarray, factors: np.ndarray) -> torch.Tensor:
        """N×1×64×64 binary images: each base mask placed at its (x, y) offset."""
        f = torch.as_tensor(factors, dtype=torch.long, device=self.masks.device)
        base = self.masks[(f[:, 0] * FACTOR_SIZES[1] + f[:, 1]) * FACTOR_SIZES[2] + f[:, 2]]
        rows = self._offsets[None, :] - f[:, 4:5]          # image row r shows canvas row r − y
        cols = self._offsets[None, :] - f[:, 3:4]          # image column c shows canvas column c − x
        valid = ((rows >= 0) & (rows < CANVAS))[:, :, None] & ((cols >= 0) & (cols < CANVAS))[:, None, :]
        picked = base[torch.arange(len(f), device=f.device)[:, None, None],
                      rows.clamp(0, CANVAS - 1)[:, :, None], cols.clamp(0, CANVAS - 1)[:, None, :]]
        return (picked * valid)[:, None]


ShapesSplit = FactorSplit  # the name this module gave it first


class Shapes2DDataModule(GroundTruthDataModule):
    """shapes2d for training: every image is a training image (as with dSprites); fixed random val/test sets."""

    dataset = "shapes2d"
    data_class = Shapes2D

    def __init__(self, name: str = "shapes2d", data_dir: str = "data", batch_size: int = 64, image_size: int = 64,
                 val_size: int = 5000, test_size: int = 10000, split_seed: int = 12345, seed: int = 0,
                 train_subset: int | None = None, download: bool = False, steps_per_batch: int = 1,
                 channels: int = 1, in_memory: bool = False) -> None:
        if image_size not in Shapes2D.image_sizes:
            raise ConfigError(f"data.image_size={image_size}: shapes2d is rendered at 64 or 32")
        super().__init__(name, data_dir, batch_size, image_size, val_size, test_size, split_seed, seed, train_subset,
                         download, steps_per_batch, channels, in_memory)

    def prepare_data(self) -> None:
        """Nothing to fetch: the images are rendered."""
