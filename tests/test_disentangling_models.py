"""FactorVAE and β-TCVAE: their extra terms, and a few real training steps on shapes2d."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import compose_cfg
from vae_lab.models.beta_tcvae import kl_decomposition
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


@pytest.mark.parametrize("model, extra", [("factor_vae", {"tc", "disc_loss"}), ("beta_tcvae", {"mi", "tc", "dim_kl"})])
def test_model_trains_a_few_steps_on_shapes2d(tmp_path, model, extra):
    cfg = compose_cfg(tmp_path, f"model={model}", "data=shapes2d", "net.image_size=32", "data.train_subset=256",
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
