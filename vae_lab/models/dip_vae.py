"""DIP-VAE (Kumar et al., 2018): the VAE objective plus a penalty pulling a latent covariance towards the identity."""

from typing import Any

import torch

from vae_lab.errors import ConfigError, check_number
from vae_lab.models.base import BaseVAE, Posterior

VARIANTS = ("i", "ii")
# disentanglement_lib's study (unsupervised_study_v1/sweep.py): λ_d = lambda_d_factor · λ_od, the factor 10 for
# DIP-VAE-I and 1 for DIP-VAE-II.
LAMBDA_D_FACTOR = {"i": 10.0, "ii": 1.0}


def dip_covariance(mu: torch.Tensor, logvar: torch.Tensor, variant: str) -> torch.Tensor:
    """D×D: Cov[μ] over the batch (I), or the aggregate posterior's E[diag σ²] + Cov[μ] (II); biased (1/M)."""
    centred = mu - mu.mean(0)
    covariance = centred.T @ centred / len(mu)
    return covariance if variant == "i" else covariance + torch.diag(logvar.exp().mean(0))


def dip_penalty(covariance: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)²."""
    diagonal = torch.diagonal(covariance)
    off_diagonal = covariance - torch.diag(diagonal)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()


class DIPVAE(BaseVAE):
    """recon + β·KL + the DIP penalty; `lambda_d` null takes the study's λ_d for the variant (10·λ_od or λ_od)."""

    def __init__(self, net: Any, variant: str = "i", lambda_od: float = 10.0, lambda_d: float | None = None,
                 **kwargs: Any) -> None:
        variant = str(variant).lower()
        if variant not in VARIANTS:
            raise ConfigError(f"model.variant={variant!r}: choose i or ii")
        check_number("model.lambda_od", lambda_od, minimum=0)
        check_number("model.lambda_d", lambda_d, minimum=0, nullable=True)
        lambda_d = LAMBDA_D_FACTOR[variant] * lambda_od if lambda_d is None else lambda_d
        super().__init__(net, **kwargs)
        self.variant, self.lambda_od, self.lambda_d = variant, float(lambda_od), float(lambda_d)

    def objective(self, terms: dict[str, torch.Tensor], posterior: Posterior) -> dict[str, torch.Tensor]:
        _, mu, logvar = posterior
        dip = dip_penalty(dip_covariance(mu.float(), logvar.float(), self.variant), self.lambda_od, self.lambda_d)
        return {"loss": terms["recon"] + self.beta * terms["kl"] + dip, "dip": dip}
