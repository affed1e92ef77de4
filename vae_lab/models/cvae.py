"""The conditional VAE (Sohn et al.): the one-hot label is fed to both encoder and decoder."""

from typing import Any

import torch
from torch import nn

from vae_lab.errors import ConfigError, check_flag, check_number
from vae_lab.models.base import BaseVAE
from vae_lab.models.reparam import gaussian_log_density


class CVAE(BaseVAE):
    """A VAE whose encoder and decoder see the label; optionally a learned (mixture) prior p(z|y)."""

    conditional = True

    def __init__(self, net: Any, learned_prior: bool = False, prior_components: int = 1, **kwargs: Any) -> None:
        check_flag("model.learned_prior", learned_prior)
        check_number("model.prior_components", prior_components, whole=True, minimum=1)
        if prior_components > 1 and not learned_prior:
            raise ConfigError(f"model.prior_components={prior_components}: > 1 only with model.learned_prior=true")
        super().__init__(net, **kwargs)
        self.components = prior_components
        width = prior_components * 2 * self.latent_dim
        self.prior_net = nn.Embedding(self.num_classes, width) if learned_prior else None
        self.prior_logits = nn.Embedding(self.num_classes, prior_components) if prior_components > 1 else None
        if self.prior_net is not None:
            nn.init.zeros_(self.prior_net.weight)  # one component: starts as N(0, I)
        if self.prior_logits is not None:
            nn.init.zeros_(self.prior_logits.weight)
            with torch.no_grad():  # distinct starting means, or the components never separate
                self.prior_net.weight.view(self.num_classes, prior_components, 2, -1)[:, :, 0].normal_()

    def prior(self, y: torch.Tensor | None) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """p(z|y) = N(mu_y, diag exp(logvar_y)) when learned (N×K×D for a mixture), else N(0, I)."""
        if self.prior_net is None or y is None:
            return super().prior(y)
        mu, logvar = self.prior_net(y.long()).float().view(len(y), self.components, 2, -1).unbind(2)
        return (mu, logvar) if self.components > 1 else (mu[:, 0], logvar[:, 0])

    def mixture(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mixture prior of labels y: means and log-variances N×K×D, log weights N×K."""
        mu, logvar = self.prior(y)
        return mu, logvar, torch.log_softmax(self.prior_logits(y.long()).float(), dim=-1)

    def log_prior(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """log p(z|y) for codes (…, N, D): log Σ_k π_k N(z; μ_k, σ_k²) for a mixture."""
        if self.prior_logits is None or y is None:
            return super().log_prior(z, y)
        mu, logvar, log_pi = self.mixture(y)
        per_component = gaussian_log_density(z.unsqueeze(-2), mu, logvar).sum(-1)  # …×N×K
        return torch.logsumexp(per_component + log_pi, dim=-1)

    def kl_terms(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor,
                 y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Analytic for one Gaussian; for a mixture, the sampled log q − log p and `kl_per_dimension`'s split."""
        if self.prior_logits is None or y is None:
            return super().kl_terms(mu, logvar, z, y)
        kl = gaussian_log_density(z, mu, logvar).sum(-1) - self.log_prior(z, y)
        return kl, self.kl_per_dimension(mu, logvar, y)

    def kl_per_dimension(self, mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """For a mixture prior, each latent's share Σ_k r_k·KL(q_d || p_k,d) (docs/tensorboard.md)."""
        if self.prior_logits is None or y is None:
            return super().kl_per_dimension(mu, logvar, y)
        p_mu, p_logvar, log_pi = self.mixture(y)
        per_component = self.kl_per_dim(mu.unsqueeze(1), logvar.unsqueeze(1), p_mu, p_logvar)  # N×K×D
        weights = torch.softmax(log_pi - per_component.sum(-1), dim=-1)  # N×K
        return (weights.unsqueeze(-1) * per_component).sum(1)

    def sample_latents(self, n: int, labels: torch.Tensor | None, temperature: float = 1.0) -> torch.Tensor:
        """Codes from p(z|labels): a component by its weight, then its Gaussian with std scaled by temperature."""
        if self.prior_logits is None or labels is None:
            return super().sample_latents(n, labels, temperature)
        mu, logvar, log_pi = self.mixture(labels)
        k = torch.distributions.Categorical(logits=log_pi).sample()
        pick = torch.arange(len(labels), device=mu.device)
        return self.sample_prior(n, self.device, temperature, mu[pick, k], logvar[pick, k])

    def generate(self, n: int | None = None, labels: torch.Tensor | None = None,
                 temperature: float = 1.0) -> torch.Tensor:
        """Class-conditional samples: one image per entry of `labels` (default 0…9 cycled)."""
        if labels is not None and ((labels < 0) | (labels >= self.num_classes)).any():
            raise ConfigError(f"label out of range: the CVAE knows labels 0…{self.num_classes - 1}")
        return super().generate(n, labels, temperature)
