"""The importance-weighted autoencoder (Burda, Grosse & Salakhutdinov, 2016): the k-sample bound as the loss."""

import math
from typing import Any

import torch

from vae_lab.errors import check_number
from vae_lab.models.base import BaseVAE, Batch
from vae_lab.models.likelihood import nll
from vae_lab.models.reparam import gaussian_log_density


class IWAE(BaseVAE):
    """loss = −log (1/k) Σ_j p(x|z_j) p(z_j) / q(z_j|x), z_1…z_k ~ q(z|x): a tighter bound on −log p(x) as k grows;
    k = 1 is the VAE's single-sample −ELBO. recon, kl and nelbo are the first sample's, as the VAE logs them."""

    def __init__(self, net: Any, k: int = 5, **kwargs: Any) -> None:
        check_number("model.k", k, whole=True, minimum=1)
        super().__init__(net, **kwargs)

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, y = batch
        k = self.hparams.k
        mu, logvar = self.encode(x, y)
        z = self.reparametrize(mu.expand(k, *mu.shape), logvar.expand(k, *logvar.shape))  # k×N×D
        logits = self.decode(z.flatten(0, 1), None if y is None else y.repeat(k))
        recon = nll(logits, x.repeat(k, *[1] * (x.dim() - 1)), self.hparams.likelihood, self.hparams.obs_sigma)
        recon = recon.view(k, len(x))
        log_ratio = self.log_prior(z, y) - gaussian_log_density(z, mu, logvar).sum(-1)  # log p(z) − log q(z|x)
        log_w = self.kl_weight() * log_ratio - recon
        kl, kl_dim = self.kl_terms(mu, logvar, z[0], y)
        terms = {"recon": recon[0].mean(), "kl": kl.mean()}
        terms["nelbo"] = terms["recon"] + terms["kl"]
        terms["loss"] = (math.log(k) - torch.logsumexp(log_w, dim=0)).mean()
        terms["kl_dim"], terms["z"] = kl_dim.mean(0), z[0]
        return terms

    def loss_is_nelbo(self) -> bool:
        return False
