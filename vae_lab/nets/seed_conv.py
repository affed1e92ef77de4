"""The design notes' CVAE network: one strided conv in, two small FC layers out."""

import torch
from torch import nn

from vae_lab.nets import check_image_channels, check_widths, with_label


class SeedConvNet(nn.Module):
    """Encoder conv 16×3×3/2 + BatchNorm + ReLU, (+ label), FC 784, → (mu, logvar); decoder FC 64 → FC H·W."""

    def __init__(self, image_size: int = 28, latent_dim: int = 10, label_dim: int = 0, channels: int = 16,
                 hidden: int = 784, decoder_hidden: int = 64, image_channels: int = 1) -> None:
        super().__init__()
        check_widths(channels=channels, hidden=hidden, decoder_hidden=decoder_hidden)
        check_image_channels(image_channels)
        self.image_size, self.latent_dim, self.image_channels = image_size, latent_dim, image_channels
        half = (image_size + 1) // 2
        self.conv = nn.Sequential(nn.Conv2d(image_channels, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels),
                                  nn.ReLU())
        self.head = nn.Sequential(nn.Linear(channels * half * half + label_dim, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim + label_dim, decoder_hidden), nn.ReLU(),
                                     nn.Linear(decoder_hidden, image_channels * image_size * image_size))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(with_label(self.conv(x).flatten(1), y)).chunk(2, dim=1)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(with_label(z, y)).view(-1, self.image_channels, self.image_size, self.image_size)
