"""β-TCVAE (Chen et al., 2018): the KL split into index-code MI, total correlation and dimension-wise KL."""

import math
from typing import Any

import torch

from vae_lab.errors import check_number
from vae_lab.models.base import BaseVAE, Posterior
from vae_lab.models.reparam import gaussian_log_density


def kl_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                     dataset_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(index-code MI, total correlation, dimension-wise KL), batch means, by minibatch-weighted sampling."""
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    pairwise = gaussian_log_density(z[:, None], mu[None], logvar[None])        # M×M×D: log q(z_i,d | x_j)
    log_nm = math.log(dataset_size * len(z))
    log_qz = torch.logsumexp(pairwise.sum(-1), dim=1) - log_nm
    log_prod_qz = (torch.logsumexp(pairwise, dim=1) - log_nm).sum(-1)
    log_qz_x = gaussian_log_density(z, mu, logvar).sum(-1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(-1)
    return (log_qz_x - log_qz).mean(), (log_qz - log_prod_qz).mean(), (log_prod_qz - log_pz).mean()


class BetaTCVAE(BaseVAE):
    """recon + α·MI + β·TC + γ·dimension-wise KL; α = γ = 1 leaves only the total correlation re-weighted."""

    def __init__(self, net: Any, alpha: float = 1.0, beta: float = 6.0, gamma: float = 1.0,
                 dataset_size: int | None = None, **kwargs: Any) -> None:
        check_number("model.alpha", alpha, minimum=0)
        check_number("model.gamma", gamma, minimum=0)
        check_number("model.dataset_size", dataset_size, whole=True, minimum=1, nullable=True)
        super().__init__(net, beta=beta, **kwargs)
        self.dataset_size = dataset_size

    def setup(self, stage: str) -> None:
        """N for the estimator: the training split's size unless `model.dataset_size` is given."""
        if self.dataset_size is None and self.trainer is not None and self.trainer.datamodule is not None:
            self.trainer.datamodule.setup(stage)
            self.dataset_size = len(self.trainer.datamodule.splits["train"])

    def objective(self, terms: dict[str, torch.Tensor], posterior: Posterior) -> dict[str, torch.Tensor]:
        mi, tc, dim_kl = kl_decomposition(*posterior, self.dataset_size or len(posterior[0]))
        loss = terms["recon"] + self.hparams.alpha * mi + self.hparams.beta * tc + self.hparams.gamma * dim_kl
        return {"loss": loss, "mi": mi, "tc": tc, "dim_kl": dim_kl}
