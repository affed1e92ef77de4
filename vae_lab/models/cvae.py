"""The conditional VAE (Sohn et al.): the one-hot label is fed to both encoder and decoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vae_lab.errors import ConfigError
from vae_lab.models.base import BaseVAE


class CVAE(BaseVAE):
    """A VAE whose encoder and decoder both see the label; optionally a learned prior p(z|y) (Sohn et al.)."""

    conditional = True

    def __init__(self, net: Any, learned_prior: bool = False, **kwargs: Any) -> None:
        super().__init__(net, **kwargs)
        self.prior_net = nn.Embedding(self.num_classes, 2 * self.latent_dim) if learned_prior else None
        if self.prior_net is not None:
            nn.init.zeros_(self.prior_net.weight)  # starts as N(0, I)

    def prior(self, y: torch.Tensor | None) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """p(z|y) = N(mu_y, diag exp(logvar_y)) when learned, else N(0, I)."""
        if self.prior_net is None or y is None:
            return super().prior(y)
        mu, logvar = self.prior_net(y.long()).float().chunk(2, dim=-1)
        return mu, logvar

    def generate(self, n: int | None = None, labels: torch.Tensor | None = None,
                 temperature: float = 1.0) -> torch.Tensor:
        """Class-conditional samples: one image per entry of `labels` (default 0…9 cycled)."""
        if labels is not None and ((labels < 0) | (labels >= self.num_classes)).any():
            raise ConfigError(f"label out of range: the CVAE knows labels 0…{self.num_classes - 1}")
        return super().generate(n, labels, temperature)
