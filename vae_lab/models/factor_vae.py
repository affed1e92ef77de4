"""FactorVAE (Kim & Mnih, 2018): recon + KL + γ·TC, the total correlation estimated by a discriminator."""

from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vae_lab.errors import ConfigError, check_number
from vae_lab.models.base import BaseVAE, Batch, Posterior, capturing


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Shuffle each latent dimension independently across the batch: samples of Π_d q(z_d)."""
    return torch.stack([column[torch.randperm(len(z), device=z.device)] for column in z.unbind(1)], dim=1)


def discriminator(latent_dim: int, hidden: int = 1000, layers: int = 6) -> nn.Sequential:
    """Kim & Mnih's MLP: `layers` hidden layers of `hidden` units, LeakyReLU(0.2), logits (joint, permuted)."""
    sizes = [latent_dim] + [hidden] * layers
    blocks = [m for a, b in pairwise(sizes) for m in (nn.Linear(a, b), nn.LeakyReLU(0.2))]
    return nn.Sequential(*blocks, nn.Linear(sizes[-1], 2))


class FactorVAE(BaseVAE):
    """The VAE and its discriminator take turns each step (two optimisers: `global_step` advances by 2)."""

    def __init__(self, net: Any, gamma: float = 35.0, disc_lr: float = 1e-4, disc_hidden: int = 1000,
                 disc_layers: int = 6, **kwargs: Any) -> None:
        check_number("model.gamma", gamma, minimum=0)
        check_number("model.disc_lr", disc_lr, above=0)
        check_number("model.disc_hidden", disc_hidden, whole=True, minimum=1)
        # no hidden layer: a linear discriminator sees only means, which the joint and its shuffle share
        check_number("model.disc_layers", disc_layers, whole=True, minimum=1)
        super().__init__(net, **kwargs)
        if self.hparams.get("lr_schedule", "constant") != "constant" or self.hparams.get("lr_scheduler"):
            raise ConfigError("model.lr_schedule, model.lr_scheduler: FactorVAE's two optimisers keep a constant rate "
                              "(Kim & Mnih)")
        self.discriminator = discriminator(self.latent_dim, disc_hidden, disc_layers)

    def objective(self, terms: dict[str, torch.Tensor], posterior: Posterior) -> dict[str, torch.Tensor]:
        logits = self.discriminator(posterior[0]).float()
        tc = (logits[:, 0] - logits[:, 1]).mean()   # log D(z) / (1 − D(z)), D = P(joint)
        return {"loss": terms["recon"] + self.beta * terms["kl"] + self.hparams.gamma * tc, "tc": tc}

    def take_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The VAE's step, then the discriminator's on this batch's codes against their dimension-wise shuffle."""
        vae_opt, disc_opt = self.optimizers(use_pl_optimizer=not capturing(batch))
        terms = self.loss_terms(batch)
        self.descend(vae_opt, terms["loss"])
        z = terms["z"].detach()
        logits = self.discriminator(torch.cat([z, permute_dims(z)])).float()
        target = (torch.arange(2 * len(z), device=z.device) >= len(z)).long()  # 0: joint, 1: permuted
        disc_loss = F.cross_entropy(logits, target)
        self.descend(disc_opt, disc_loss)  # its zero_grad also drops what the VAE's backward left there
        return {**terms, "disc_loss": disc_loss.detach()}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """The VAE's Adam (as every model's) and the discriminator's, with Kim & Mnih's β = (0.5, 0.9)."""
        vae = [p for name, p in self.named_parameters() if not name.startswith("discriminator.")]
        return [torch.optim.Adam(vae, **self.adam_options(self.hparams.lr)),
                torch.optim.Adam(self.discriminator.parameters(), betas=(0.5, 0.9),
                                 **self.adam_options(self.hparams.disc_lr))]
