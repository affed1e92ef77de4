"""Burgess et al. (2018)'s conv encoder/decoder for 32×32 and 64×64 images."""

import torch
from torch import nn

from vae_lab.errors import ConfigError
from vae_lab.nets import check_image_channels, check_widths, like_weights, relu, with_label
from vae_lab.nets.upconv import UpConv

SIZES = {32: 3, 64: 4}  # image size → number of stride-2 layers down to 4×4


class BurgessNet(nn.Module):
    """Conv 32×4×4/2 per halving to 4×4, FC 256, FC 256, → 2·latent; the decoder mirrors it."""

    channels_last_pays = True  # model.channels_last=auto: measured faster channels-last on an AMX CPU (docs/speed.md)

    def __init__(self, image_size: int = 32, latent_dim: int = 10, label_dim: int = 0, channels: int = 32,
                 hidden: int = 256, image_channels: int = 1) -> None:
        super().__init__()
        check_widths(channels=channels, hidden=hidden)
        check_image_channels(image_channels)
        if image_size not in SIZES:
            raise ConfigError(f"net=burgess takes image sizes {sorted(SIZES)}, got {image_size}; "
                              "set net.image_size=32 or 64")
        self.image_size, self.latent_dim, self.channels = image_size, latent_dim, channels
        layers = SIZES[image_size]
        self.conv = nn.Sequential(*[m for i in range(layers)
                                    for m in (nn.Conv2d(image_channels if i == 0 else channels, channels, 4, 2, 1), relu())])
        flat = channels * 4 * 4
        self.head = nn.Sequential(nn.Linear(flat + label_dim, hidden), relu(), nn.Linear(hidden, hidden), relu(),
                                  nn.Linear(hidden, 2 * latent_dim))
        self.fc_dec = nn.Sequential(nn.Linear(latent_dim + label_dim, hidden), relu(), nn.Linear(hidden, hidden),
                                    relu(), nn.Linear(hidden, flat), relu())
        deconv: list[nn.Module] = []
        for i in range(layers):
            last = i == layers - 1
            deconv += [UpConv(channels, image_channels if last else channels)] + ([] if last else [relu()])
        self.deconv = nn.Sequential(*deconv)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(with_label(self.conv(x).flatten(1), y)).chunk(2, dim=1)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc_dec(with_label(z, y)).view(-1, self.channels, 4, 4)
        return self.deconv(like_weights(h, self.deconv[0]))
