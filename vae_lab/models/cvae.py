"""The conditional VAE (Sohn et al.): the one-hot label is fed to both encoder and decoder."""

from __future__ import annotations

import torch

from vae_lab.errors import ConfigError
from vae_lab.models.base import BaseVAE


class CVAE(BaseVAE):
    """A VAE whose encoder and decoder both see the label."""

    conditional = True

    def generate(self, n: int | None = None, labels: torch.Tensor | None = None,
                 temperature: float = 1.0) -> torch.Tensor:
        """Class-conditional samples: one image per entry of `labels` (default 0…9 cycled)."""
        if labels is not None and ((labels < 0) | (labels >= self.num_classes)).any():
            raise ConfigError(f"label out of range: the CVAE knows labels 0…{self.num_classes - 1}")
        return super().generate(n, labels, temperature)
