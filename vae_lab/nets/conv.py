"""A small DCGAN-style conv encoder/decoder for 28×28 or 32×32 images, the label fed to every decoder stage."""

import torch
from torch import nn

from vae_lab.errors import ConfigError
from vae_lab.nets import check_image_channels, check_widths, like_weights, relu, with_label
from vae_lab.nets.upconv import UpConv


def with_label_maps(h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Append the one-hot label as constant feature maps (conditional nets only)."""
    if y is None:
        return h
    return torch.cat([h, y.to(h.dtype)[:, :, None, None].expand(-1, -1, *h.shape[2:])], dim=1)


class ConvNet(nn.Module):
    """Conv 32 → 64 (4×4, stride 2) → FC → (mu, logvar); decoder FC → 64×s/4² → two transposed convs."""

    def __init__(self, image_size: int = 28, latent_dim: int = 10, label_dim: int = 0, channels: int = 32,
                 hidden: int = 256, image_channels: int = 1) -> None:
        super().__init__()
        check_widths(channels=channels, hidden=hidden)
        check_image_channels(image_channels)
        if image_size not in (28, 32):
            raise ConfigError(f"net=conv takes image sizes 28 and 32, got {image_size}")
        c, self.side, self.channels = channels, image_size // 4, 2 * channels
        flat = 2 * c * self.side * self.side
        self.conv = nn.Sequential(nn.Conv2d(image_channels, c, 4, 2, 1), relu(), nn.Conv2d(c, 2 * c, 4, 2, 1), relu())
        self.head = nn.Sequential(nn.Linear(flat + label_dim, hidden), relu(), nn.Linear(hidden, 2 * latent_dim))
        self.fc_dec = nn.Sequential(nn.Linear(latent_dim + label_dim, hidden), relu(), nn.Linear(hidden, flat), relu())
        self.up1 = nn.Sequential(UpConv(2 * c + label_dim, c), relu())
        self.up2 = UpConv(c + label_dim, image_channels)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(with_label(self.conv(x).flatten(1), y)).chunk(2, dim=1)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc_dec(with_label(z, y)).view(-1, self.channels, self.side, self.side)
        return self.up2(with_label_maps(self.up1(like_weights(with_label_maps(h, y), self.up1[0])), y))
