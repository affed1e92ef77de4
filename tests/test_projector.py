"""TensorBoard's Projector files: the embedding, its metadata (classes or factor values) and the sprite sheet."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vae_lab.models.vae import VAE
from vae_lab.viz.projector import projector_count, write_projector


def projector_files(folder: Path) -> dict[str, Path]:
    """The files projector_config.pbtxt names for the one embedding it lists (tensors, metadata, sprite)."""
    config = (folder / "projector_config.pbtxt").read_text()
    paths = dict(re.findall(r'(tensor_path|metadata_path|image_path): "([^"]+)"', config))
    assert set(paths) == {"tensor_path", "metadata_path", "image_path"}, config
    return {key: folder / path for key, path in paths.items()}


def check_projector(folder: Path, n: int, latents: int, size: int) -> list[str]:
    """Assert the embedding holds n codes of `latents` values and an n-image sprite; return the metadata lines."""
    files = projector_files(folder)
    codes = np.loadtxt(files["tensor_path"], delimiter="\t", ndmin=2)
    assert codes.shape == (n, latents) and np.isfinite(codes).all()
    side = int(np.ceil(np.sqrt(n))) * size
    assert Image.open(files["image_path"]).size == (side, side)
    return files["metadata_path"].read_text().splitlines()


class FactorSplit:
    """A ground-truth split stand-in: images with their factor values, indexed by an index tensor."""

    def __init__(self, n: int) -> None:
        self.x, self.factors = torch.rand(n, 1, 28, 28), torch.randint(0, 5, (n, 3))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.factors[index]


def test_factor_values_are_the_metadata_columns(tmp_path):
    model = VAE({"_target_": "vae_lab.nets.mlp.MLPNet", "image_size": 28, "hidden": [32]}, latent_dim=4).eval()
    split = FactorSplit(30)
    assert write_projector(tmp_path, model, split, 25, step=7, factor_names=["shape", "scale", "x"]) == 25
    lines = check_projector(tmp_path, 25, 4, 28)
    assert lines[0] == "shape\tscale\tx" and len(lines) == 26
    assert lines[1] == "\t".join(str(v) for v in split.factors[0].tolist())
    assert write_projector(tmp_path / "off", model, split, 0) == 0 and not (tmp_path / "off").exists()
    assert projector_count(50_000, 64, 50_000) == 128 ** 2  # one sprite sheet of at most 8192² pixels
