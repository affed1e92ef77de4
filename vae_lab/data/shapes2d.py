"""shapes2d: dSprites' factor grid and order, rendered by vae_lab itself one batch at a time on the device."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from vae_lab.data.ground_truth import GroundTruth, GroundTruthDataModule

FACTOR_NAMES = ["shape", "scale", "orientation", "x", "y"]
FACTOR_SIZES = [3, 6, 40, 32, 32]
SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
CANVAS = 32        # base masks are drawn centred on a CANVAS × CANVAS grid
FULL = 64          # image side; x, y are the canvas's offset in it (0…31)
SUPERSAMPLE = 4    # sub-pixel samples per side when drawing the base masks


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


class Shapes2DDataModule(GroundTruthDataModule):
    """shapes2d for training: every image is a training image (as with dSprites); fixed random val/test sets."""

    datasets = ("shapes2d",)
    data_class = Shapes2D
