"""The reparametrization trick, the analytic KL to N(0, I) and prior sampling, shared by every model."""

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor | float = 0.0,
                         logvar: torch.Tensor | float = 0.0) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) per dimension (broadcasting), for sampled estimates of KL terms."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * _exp(-logvar))


def _exp(value: torch.Tensor | float) -> torch.Tensor | float:
    """exp of a tensor or a number, keeping a number off the device (a CUDA graph cannot capture a copy)."""
    return value.exp() if torch.is_tensor(value) else math.exp(value)


class ReparametrizationMixin:
    """Gaussian posterior q(z|x) = N(mu, exp(logvar)) against the prior N(0, I)."""

    latent_dim: int

    @staticmethod
    def reparametrize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, differentiable in mu and logvar."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    @staticmethod
    def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor, prior_mu: torch.Tensor | float = 0.0,
                   prior_logvar: torch.Tensor | float = 0.0) -> torch.Tensor:
        """KL(q(z_i|x) || p(z_i)) for each latent dimension, in nats (N×D); p = N(0, 1) unless given."""
        return 0.5 * (prior_logvar - logvar + (logvar.exp() + (mu - prior_mu).pow(2)) * _exp(-prior_logvar) - 1.0)

    def sample_prior(self, n: int, device: torch.device | str = "cpu", temperature: float = 1.0,
                     prior_mu: torch.Tensor | float = 0.0, prior_logvar: torch.Tensor | float = 0.0) -> torch.Tensor:
        """n latent codes from the prior N(prior_mu, exp(prior_logvar)) with its std scaled by temperature."""
        eps = torch.randn(n, self.latent_dim, device=device) * temperature
        return prior_mu + eps * torch.exp(0.5 * torch.as_tensor(prior_logvar, device=device))
