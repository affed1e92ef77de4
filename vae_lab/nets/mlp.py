"""A fully connected encoder/decoder pair, any image size."""

import itertools

import torch
from torch import nn

from vae_lab.errors import ConfigError
from vae_lab.nets import check_image_channels, check_widths, with_label

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}  # net.activation: between the layers


def mlp(sizes: list[int], activation: str = "relu") -> nn.Sequential:
    """Linear layers with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers += [nn.Linear(a, b)] + ([ACTIVATIONS[activation]()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


class MLPNet(nn.Module):
    """Flattened image (+ label) → hidden layers → (mu, logvar); the decoder mirrors it."""

    def __init__(self, image_size: int = 28, latent_dim: int = 10, label_dim: int = 0,
                 hidden: tuple[int, ...] = (512, 512), image_channels: int = 1, activation: str = "relu") -> None:
        super().__init__()
        check_widths(hidden=hidden)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"net.activation={activation!r}: choose one of {sorted(ACTIVATIONS)}")
        check_image_channels(image_channels)
        self.image_size, self.latent_dim, self.image_channels = image_size, latent_dim, image_channels
        pixels = image_channels * image_size * image_size
        self.encoder = mlp([pixels + label_dim, *hidden, 2 * latent_dim], activation)
        self.decoder = mlp([latent_dim + label_dim, *reversed(hidden), pixels], activation)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(with_label(x.flatten(1), y)).chunk(2, dim=1)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(with_label(z, y)).view(-1, self.image_channels, self.image_size, self.image_size)
