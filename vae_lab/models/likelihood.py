"""Decoder likelihoods: negative log-likelihood per image, in nats, from decoder logits."""

import math

import torch
import torch.nn.functional as F

LIKELIHOODS = ("bernoulli", "gaussian")


def nll(logits: torch.Tensor, x: torch.Tensor, likelihood: str = "bernoulli", sigma: float = 0.1) -> torch.Tensor:
    """−log p(x|z) summed over pixels (shape N): Bernoulli on [0, 1] intensities, or Gaussian with fixed sigma."""
    logits = logits.float()
    if likelihood == "bernoulli":
        if torch.is_grad_enabled():
            return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        return softplus_sum(logits.flatten(1)) - (logits * x).flatten(1).sum(1)  # BCE(l, x) = softplus(l) − x·l
    err = (x - torch.sigmoid(logits)).flatten(1)
    return (0.5 * (err / sigma).pow(2) + math.log(sigma) + 0.5 * math.log(2 * math.pi)).sum(1)


def softplus_sum(logits: torch.Tensor) -> torch.Tensor:
    """Σ softplus(l) per row with one log per product of up to 64 factors: fp32-exact, faster on the CPU."""
    group = math.gcd(logits.shape[1], 64)
    factors = torch.exp(-logits.abs()).add_(1).view(len(logits), -1, group)
    return logits.clamp_min(0).sum(1) + factors.prod(-1).log_().sum(1)


def mean_image(logits: torch.Tensor) -> torch.Tensor:
    """The decoder's mean image in [0, 1] (both likelihoods use a sigmoid mean)."""
    return torch.sigmoid(logits.float())
