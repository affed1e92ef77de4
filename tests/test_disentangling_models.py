"""FactorVAE, β-TCVAE and DIP-VAE: their extra terms, and a few real training steps on shapes2d and MNIST."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import compose_cfg
from vae_lab.errors import ConfigError
from vae_lab.models.beta_tcvae import kl_decomposition
from vae_lab.models.dip_vae import DIPVAE, dip_covariance, dip_penalty
from vae_lab.models.factor_vae import permute_dims
from vae_lab.models.reparam import gaussian_log_density
from vae_lab.train import build


def test_kl_decomposition_adds_up_to_the_sampled_kl():
    torch.manual_seed(0)
    mu, logvar = torch.randn(64, 6), torch.randn(64, 6) * 0.3 - 1
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    mi, tc, dim_kl = kl_decomposition(z, mu, logvar, dataset_size=10_000)
    sampled_kl = (gaussian_log_density(z, mu, logvar) - gaussian_log_density(z, 0 * z, 0 * z)).sum(1).mean()
    assert float(mi + tc + dim_kl) == pytest.approx(float(sampled_kl), abs=1e-4)


def test_total_correlation_is_larger_for_dependent_latents():
    torch.manual_seed(0)
    source = torch.randn(256, 1)
    dependent = source.repeat(1, 4) + 0.05 * torch.randn(256, 4)   # four copies of one factor
    independent = torch.randn(256, 4)
    logvar = torch.full((256, 4), math.log(0.3**2))
    # both estimates carry the same log(N·M) offsets; only their difference speaks (measured: 2.8 nats)
    tc = [float(kl_decomposition(m, m, logvar, 256)[1]) for m in (dependent, independent)]
    assert tc[0] > tc[1] + 1.5


def test_permute_dims_keeps_each_marginal_and_breaks_the_dependence():
    torch.manual_seed(0)
    z = torch.randn(500, 1).repeat(1, 3)
    permuted = permute_dims(z)
    assert torch.equal(permuted.sort(0).values, z.sort(0).values)
    assert abs(float(torch.corrcoef(permuted.T)[0, 1])) < 0.2 < float(torch.corrcoef(z.T)[0, 1])


def test_dip_covariance_and_penalty_on_known_inputs():
    mu = torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0], [2.0, -1.0]])
    # Cov[μ] with 1/M: x deviations (−1, 1, 0, 0), y deviations (0, 0, 3, −3) → diag (0.5, 4.5), off-diagonal 0
    cov_i = dip_covariance(mu, torch.zeros_like(mu), "i")
    assert torch.allclose(cov_i, torch.tensor([[0.5, 0.0], [0.0, 4.5]]))
    logvar = torch.log(torch.tensor([[0.5, 1.0], [1.5, 1.0], [0.5, 3.0], [1.5, 3.0]]))  # E[σ²] = (1, 2)
    cov_ii = dip_covariance(mu, logvar, "ii")
    assert torch.allclose(cov_ii, torch.tensor([[1.5, 0.0], [0.0, 6.5]]))
    covariance = torch.tensor([[2.0, 0.5], [-1.0, 1.0]])
    # λ_od·(0.5² + 1²) + λ_d·((2 − 1)² + 0²)
    assert float(dip_penalty(covariance, 3.0, 7.0)) == pytest.approx(3.0 * 1.25 + 7.0 * 1.0)
    assert float(dip_penalty(torch.eye(4), 3.0, 7.0)) == 0.0


def test_dip_lambda_d_defaults_to_the_study_and_bad_settings_are_refused():
    net = {"_target_": "vae_lab.nets.mlp.MLPNet", "image_size": 28}
    assert DIPVAE(net, variant="i", lambda_od=5.0).lambda_d == 50.0   # disentanglement_lib: λ_d = 10·λ_od for I
    assert DIPVAE(net, variant="ii", lambda_od=5.0).lambda_d == 5.0   # and λ_d = λ_od for II
    assert DIPVAE(net, variant="ii", lambda_od=5.0, lambda_d=2.0).lambda_d == 2.0
    with pytest.raises(ConfigError, match="variant"):
        DIPVAE(net, variant="iii")
    with pytest.raises(ConfigError, match="lambda_od"):
        DIPVAE(net, lambda_od=-1.0)


@pytest.mark.parametrize("model, extra, data", [
    ("factor_vae", {"tc", "disc_loss"}, "shapes2d"), ("beta_tcvae", {"mi", "tc", "dim_kl"}, "shapes2d"),
    ("dip_vae", {"dip"}, "shapes2d"), ("dip_vae model.variant=ii", {"dip"}, "mnist")])
def test_model_trains_a_few_steps(tmp_path, model, extra, data):
    cfg = compose_cfg(tmp_path, *f"model={model}".split(), f"data={data}", "net.image_size=32", "data.train_subset=256",
                      "data.batch_size=32", "trainer.max_epochs=1", "trainer.log_every_n_steps=2",
                      "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false")
    datamodule, module, trainer = build(cfg, logger=False, enable_checkpointing=False, callbacks=[],
                                        limit_val_batches=1)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer.fit(module, datamodule=datamodule)
    changed = {k.split(".")[0] for k, v in module.state_dict().items() if not torch.equal(v, before[k])}
    assert "net" in changed and (model != "factor_vae" or "discriminator" in changed)
    logged = {k.split("/", 1)[1] for k in trainer.callback_metrics if k.startswith("train_epoch/")}
    assert extra <= logged and all(math.isfinite(float(v)) for v in trainer.callback_metrics.values())
    assert "train/loss" in trainer.callback_metrics, "step scalars every log_every_n_steps batches (2 optimiser steps each)"
