"""The reparametrization trick, the analytic KL to N(0, I) and prior sampling, shared by every model."""

from __future__ import annotations

import torch


class ReparametrizationMixin:
    """Gaussian posterior q(z|x) = N(mu, exp(logvar)) against the prior N(0, I)."""

    latent_dim: int

    @staticmethod
    def reparametrize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, differentiable in mu and logvar."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    @staticmethod
    def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q(z_i|x) || N(0, 1)) for each latent dimension, in nats (N×D)."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)

    def sample_prior(self, n: int, device: torch.device | str = "cpu", temperature: float = 1.0) -> torch.Tensor:
        """n latent codes from N(0, temperature² I)."""
        return torch.randn(n, self.latent_dim, device=device) * temperature
