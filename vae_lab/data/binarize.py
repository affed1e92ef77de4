"""Binarized MNIST (`data.binarize`): `dynamic` re-draws training images per read, `static` fixes them once."""

import torch
from torch.utils.data import Dataset

from vae_lab.errors import ConfigError

MODES = ("none", "dynamic", "static")


def check_binarize(mode: str) -> None:
    """One line unless `data.binarize` is one of MODES."""
    if mode not in MODES:
        raise ConfigError(f"data.binarize={mode!r}: choose one of {MODES}")


def binarized(images: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 images drawn once as Bernoulli(pixel / 255) on the CPU: the same draw for a seed on any device."""
    probabilities = images.cpu().float().div_(255)
    draw = torch.bernoulli(probabilities, generator=torch.Generator().manual_seed(seed))
    return draw.mul_(255).to(torch.uint8).to(images.device)


class Redrawn(Dataset):
    """A split read as a fresh Bernoulli(pixel) draw each time, from torch's global (checkpointed) generator."""

    def __init__(self, split: Dataset) -> None:
        self.split = split
        self.images, self.labels = split.images, split.labels  # the grey images the draws are made from

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.split[index]
        return torch.bernoulli(x), y
