"""Evaluation on data with known generative factors (shapes2d): every disentanglement metric of a model."""

import time

import numpy as np
import torch

import vae_lab.metrics.disentanglement as dis
from vae_lab.models.base import BaseVAE


def encoder(model: BaseVAE, sampled: bool = False) -> dis.Encoder:
    """images → the model's mean representation (or a sample of q(z|x)) as a NumPy array, on its device."""

    @torch.no_grad()
    def encode(images: torch.Tensor) -> np.ndarray:
        mu, logvar = model.encode(images.to(model.device), None)
        return (model.reparametrize(mu, logvar) if sampled else mu).float().cpu().numpy()

    return encode


def disentanglement_metrics(model: BaseVAE, data: dis.GroundTruth, seed: int = 0, num_train: int = 10_000,
                            num_test: int = 5_000, score_train: int = 10_000, score_eval: int = 5_000,
                            dci_stages: int = 100, dci_booster: str = "exact") -> dict[str, float]:
    """`test/<metric>` for every disentanglement metric, on freshly sampled factors as disentanglement_lib."""
    model.eval()
    rng = np.random.default_rng(seed)
    factors = data.sample_factors(num_train + num_test, rng)
    codes = dis.encode_factors(data, encoder(model), factors)
    sampled = dis.encode_factors(data, encoder(model, sampled=True), factors[:num_train])
    train, test = (codes[:num_train], factors[:num_train]), (codes[num_train:], factors[num_train:])
    out = {**dis.mig(*train), **dis.modularity(*train), **dis.sap(*train, *test), **dis.explicitness(*train, *test),
           **dis.gaussian_total_correlation(sampled)}
    start = time.perf_counter()
    out.update(dis.dci(*train, *test, n_stages=dci_stages, booster=dci_booster))
    dci_seconds = time.perf_counter() - start
    out.update(dis.factor_vae_score(data, encoder(model), rng, num_train=score_train, num_eval=score_eval,
                                    num_variance_estimate=score_train))
    out.update(dis.beta_vae_score(data, encoder(model), rng, num_train=score_train, num_eval=score_eval))
    return {**{f"test/{k}": float(v) for k, v in out.items()}, "time/dci_seconds": dci_seconds}


def class_factor_metrics(train_codes: torch.Tensor, train_labels: torch.Tensor, test_codes: torch.Tensor,
                         test_labels: torch.Tensor, dci_stages: int = 100) -> dict[str, float]:
    """The sample-based metrics with the class as the one factor, those that still measure something."""
    train = (train_codes.float().cpu().numpy(), train_labels.cpu().numpy()[:, None])
    test = (test_codes.float().cpu().numpy(), test_labels.cpu().numpy()[:, None])
    out = {**dis.mig(*train), **dis.sap(*train, *test), **dis.explicitness(*train, *test)}
    out.update(dis.dci(*train, *test, n_stages=dci_stages))
    out.pop("dci_disentanglement")
    return {f"test/{k}": float(v) for k, v in out.items()}
