"""The IWAE objective, the likelihood nets, and the schedules the likelihood presets train with."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import compose_cfg
from vae_lab.errors import ConfigError
from vae_lab.models import load_model
from vae_lab.models.iwae import IWAE
from vae_lab.models.likelihood import nll
from vae_lab.models.reparam import gaussian_log_density
from vae_lab.models.vae import VAE
from vae_lab.nets.gated_mlp import GatedMLPNet
from vae_lab.nets.mlp import MLPNet

MLP = {"_target_": "vae_lab.nets.mlp.MLPNet", "image_size": 28, "hidden": [64], "activation": "tanh"}


def _pair(k: int) -> tuple[VAE, IWAE]:
    vae, iwae = VAE(MLP, latent_dim=8), IWAE(MLP, k=k, latent_dim=8)
    iwae.load_state_dict(vae.state_dict())
    return vae, iwae


def test_k1_is_the_vaes_elbo_on_the_same_noise():
    """k = 1: the same z as the VAE's (same seed), so the same recon, KL and −ELBO; the loss is the −ELBO's
    single-sample estimate at that z, recon + log q(z|x) − log p(z), to the last bit."""
    vae, iwae = _pair(1)
    x = torch.bernoulli(torch.rand(16, 1, 28, 28))
    torch.manual_seed(3)
    ours = iwae.loss_terms((x, None))
    torch.manual_seed(3)
    theirs = vae.loss_terms((x, None))
    for key in ("recon", "kl", "nelbo", "z"):
        assert torch.equal(ours[key], theirs[key]), key
    torch.manual_seed(3)
    mu, logvar = vae.encode(x)
    z = vae.reparametrize(mu, logvar)
    log_ratio = vae.log_prior(z, None) - gaussian_log_density(z, mu, logvar).sum(-1)
    assert torch.equal(ours["loss"], (nll(vae.decode(z), x) - log_ratio).mean())


def test_k1_loss_averages_to_the_vaes_analytic_elbo():
    """Over many draws the sampled KL of the k = 1 bound averages to the VAE's analytic one."""
    vae, iwae = _pair(1)
    x = torch.bernoulli(torch.rand(1, 1, 28, 28)).expand(4096, -1, -1, -1)
    torch.manual_seed(0)
    with torch.no_grad():
        assert iwae.loss_terms((x, None))["loss"].item() == pytest.approx(vae.loss_terms((x, None))["nelbo"].item(),
                                                                        abs=0.3)


def test_more_samples_give_a_tighter_bound():
    vae, iwae = _pair(50)
    x = torch.bernoulli(torch.rand(64, 1, 28, 28))
    torch.manual_seed(0)
    with torch.no_grad():
        k50, k1 = iwae.loss_terms((x, None))["loss"], vae.loss_terms((x, None))["nelbo"]
    assert k50 < k1 - 1.0  # an untrained encoder leaves a wide gap for the importance weights to close


@pytest.mark.parametrize("k", [0, -3, 1.5, "five"])
def test_a_bad_k_is_refused_in_one_line(k):
    with pytest.raises(ConfigError, match="model.k="):
        IWAE(MLP, k=k)


def test_model_iwae_trains_from_its_config_and_reloads(tmp_path, data_dir):
    """`model=iwae model.k=3` on Burda's net: trains, and its checkpoint rebuilds through load_model."""
    from vae_lab.train import build

    cfg = compose_cfg(tmp_path, "model=iwae", "model.k=3", "net=burda_mlp", "data.binarize=dynamic",
                      "data.train_subset=128", "data.batch_size=64", "trainer.precision=32-true",
                      "trainer.log_every_n_steps=1")
    datamodule, model, trainer = build(cfg, callbacks=[], logger=False, max_steps=2, limit_val_batches=0,
                                       enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=datamodule)
    assert isinstance(model, IWAE) and model.hparams.k == 3 and torch.isfinite(trainer.callback_metrics["train/loss"])
    trainer.save_checkpoint(tmp_path / "iwae.ckpt")
    loaded = load_model(tmp_path / "iwae.ckpt")
    assert isinstance(loaded, IWAE) and loaded.hparams.k == 3


def test_burdas_mlp_and_the_gated_mlp_have_their_papers_shapes():
    """784-200-200-50 tanh (Burda et al.); 2 × GatedDense(300), z = 40, log σ² in [−6, 2] (Tomczak & Welling)."""
    burda = MLPNet(latent_dim=50, hidden=(200, 200), activation="tanh")
    widths = [m.out_features for m in burda.encoder if isinstance(m, torch.nn.Linear)]
    assert widths == [200, 200, 100] and all(isinstance(m, (torch.nn.Linear, torch.nn.Tanh)) for m in burda.encoder)
    gated = GatedMLPNet(latent_dim=40)
    linear = (784 * 300 + 300) * 2 + (300 * 300 + 300) * 2  # each GatedDense has a value and a gate layer
    expected = linear + 2 * (300 * 40 + 40) + (40 * 300 + 300) * 2 + (300 * 300 + 300) * 2 + 300 * 784 + 784
    assert sum(p.numel() for p in gated.parameters()) == expected
    with torch.no_grad():
        gated.logvar.bias.fill_(50.0)
        mu, logvar = gated.encode(torch.rand(3, 1, 28, 28))
    assert mu.shape == logvar.shape == (3, 40) and logvar.max() == 2.0
    assert gated.decode(mu).shape == (3, 1, 28, 28)
    with pytest.raises(ConfigError, match="net.activation='gelu'"):
        MLPNet(activation="gelu")


class _Rates(pl.Callback):
    """The learning rate and the KL warm-up weight each training epoch ran with."""

    def __init__(self) -> None:
        self.lr, self.warmup = {}, {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lr[trainer.current_epoch] = trainer.optimizers[0].param_groups[0]["lr"]
        self.warmup[trainer.current_epoch] = module.warmup.item()


def _fit_epochs(tmp_path, epochs, ckpt=None):
    from vae_lab.train import build

    cfg = compose_cfg(tmp_path, "model=iwae", "model.k=2", "net=burda_mlp", "data.train_subset=128",
                      "data.batch_size=64", "trainer.precision=32-true", "model.adam_eps=1e-4",
                      "model.kl_warmup_epochs=4",
                      "model.lr_scheduler={_target_:torch.optim.lr_scheduler.MultiStepLR,milestones:[1,3],gamma:0.5}")
    rates = _Rates()
    datamodule, model, trainer = build(cfg, callbacks=[rates], logger=False, max_epochs=epochs, limit_val_batches=0,
                                       enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    return trainer, rates


def test_an_epoch_schedule_steps_per_epoch_and_resumes_in_step(tmp_path, data_dir):
    """MultiStepLR at epochs 1 and 3 (γ = ½), 2 optimiser steps per epoch: the rate changes at epochs, not steps,
    and a run resumed after epoch 2 goes on as the uninterrupted one; Adam's ε and the KL warm-up (epoch/4) too."""
    trainer, rates = _fit_epochs(tmp_path, 4)
    assert rates.lr == pytest.approx({0: 1e-3, 1: 5e-4, 2: 5e-4, 3: 2.5e-4})
    assert rates.warmup == pytest.approx({0: 0.25, 1: 0.5, 2: 0.75, 3: 1.0})
    assert trainer.optimizers[0].param_groups[0]["eps"] == 1e-4 and trainer.global_step == 8
    first, _ = _fit_epochs(tmp_path, 2)
    first.save_checkpoint(tmp_path / "two.ckpt")
    _, resumed = _fit_epochs(tmp_path, 4, ckpt=tmp_path / "two.ckpt")
    assert resumed.lr == pytest.approx({2: 5e-4, 3: 2.5e-4}) and resumed.warmup == pytest.approx({2: 0.75, 3: 1.0})


def test_the_warmup_weighs_the_kl_while_training_only():
    model = VAE(MLP, latent_dim=8, kl_warmup_epochs=10)
    x = (torch.rand(8, 1, 28, 28), None)
    model.warmup.fill_(0.3)
    terms = model.loss_terms(x)
    assert torch.allclose(terms["loss"], terms["recon"] + 0.3 * terms["kl"])
    model.eval()
    terms = model.loss_terms(x)
    assert torch.equal(terms["loss"], terms["recon"] + terms["kl"])


@pytest.mark.parametrize("options, message", [
    ({"lr_scheduler": {"_target_": "os.system", "command": "true"}}, "model.lr_scheduler._target_='os.system'"),
    ({"lr_scheduler": {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": {"_target_": "os.getpid"}}},
     "model.lr_scheduler.step_size={'_target_': 'os.getpid'}: must be a whole number"),
    ({"lr_scheduler": {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 2}, "lr_schedule": "cosine"},
     "choose one"),
    ({"adam_eps": 0.0}, "model.adam_eps=0.0"), ({"adam_eps": "tiny"}, "model.adam_eps='tiny'"),
    ({"kl_warmup_epochs": -1}, "model.kl_warmup_epochs=-1"), ({"lr_scheduler": 5}, "model.lr_scheduler=5"),
])
def test_bad_schedule_settings_are_refused_in_one_line(options, message):
    with pytest.raises(ConfigError, match=message):
        VAE(MLP, **options)


def test_burdas_stages_are_a_multistep_schedule():
    """The preset's MultiStepLR gives stage i (3^i epochs) the rate 1e-3 · 10^(−i/7), i = 0…7."""
    from hydra.utils import instantiate

    cfg = compose_cfg(Path("/tmp"), "+experiment=burda_iwae")
    optimiser = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=cfg.model.lr)
    scheduler = instantiate(cfg.model.lr_scheduler, optimizer=optimiser)
    rates = []
    for _ in range(cfg.trainer.max_epochs):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        scheduler.step()
    start = 0
    for i in range(8):
        stage = rates[start: start + 3**i]
        assert len(stage) == 3**i and stage == pytest.approx([1e-3 * 10 ** (-i / 7)] * 3**i, rel=1e-9), i
        start += 3**i
    assert start == cfg.trainer.max_epochs == 3280
