"""Tomczak & Welling's gated MLP (VampPrior, 2018; the Exemplar VAE's net): two gated dense layers each way."""

import torch
from torch import nn

from vae_lab.nets import check_image_channels, check_widths, with_label


class GatedDense(nn.Module):
    """h(x) · σ(g(x)), both linear: a layer that learns which of its units to pass."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.h, self.g = nn.Linear(inputs, outputs), nn.Linear(inputs, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


def gated(inputs: int, hidden: int, layers: int) -> nn.Sequential:
    """`layers` GatedDense layers of `hidden` units."""
    return nn.Sequential(*(GatedDense(inputs if i == 0 else hidden, hidden) for i in range(layers)))


class GatedMLPNet(nn.Module):
    """Flattened image (+ label) → gated layers → μ and log σ² in [−6, 2]; the decoder mirrors it."""

    def __init__(self, image_size: int = 28, latent_dim: int = 40, label_dim: int = 0, hidden: int = 300,
                 layers: int = 2, image_channels: int = 1) -> None:
        super().__init__()
        check_widths(hidden=hidden, layers=layers)
        check_image_channels(image_channels)
        self.image_size, self.image_channels = image_size, image_channels
        pixels = image_channels * image_size * image_size
        self.encoder = gated(pixels + label_dim, hidden, layers)
        self.mean, self.logvar = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(gated(latent_dim + label_dim, hidden, layers), nn.Linear(hidden, pixels))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(with_label(x.flatten(1), y))
        return self.mean(h), nn.functional.hardtanh(self.logvar(h), -6.0, 2.0)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(with_label(z, y)).view(-1, self.image_channels, self.image_size, self.image_size)
