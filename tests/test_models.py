"""Objectives, nets and their combinations on small real data."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from tests.conftest import CONF, compose_cfg
from vae_lab.checkpoints import stamp
from vae_lab.errors import ConfigError
from vae_lab.models import load_model
from vae_lab.models.beta_tcvae import BetaTCVAE
from vae_lab.models.beta_vae import BetaVAE, capacity
from vae_lab.models.cvae import CVAE
from vae_lab.models.dip_vae import DIPVAE
from vae_lab.models.factor_vae import FactorVAE
from vae_lab.models.likelihood import nll
from vae_lab.models.reparam import ReparametrizationMixin
from vae_lab.models.vae import VAE
from vae_lab.nets.upconv import UpConv

MLP = {"_target_": "vae_lab.nets.mlp.MLPNet", "image_size": 28, "hidden": [64]}


def test_kl_closed_form_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.7, -1.2, 0.0]]), torch.tensor([[-0.5, 0.3, 1.1]])
    z = ReparametrizationMixin.reparametrize(mu.expand(400_000, 3), logvar.expand(400_000, 3))
    log_q = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z)
    monte_carlo = (log_q - log_p).mean(0)
    closed = ReparametrizationMixin.kl_per_dim(mu, logvar)[0]
    assert torch.allclose(monte_carlo, closed, atol=0.01)


def test_beta_one_is_exactly_the_vae():
    vae, beta = VAE(MLP), BetaVAE(MLP, beta=1.0)
    beta.load_state_dict(vae.state_dict())
    batch = (torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,)))
    torch.manual_seed(1)
    a = vae.loss_terms(batch)
    torch.manual_seed(1)
    b = beta.loss_terms(batch)
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["loss"], a["recon"] + a["kl"])


def test_beta_weights_the_kl():
    model = BetaVAE(MLP, beta=4.0)
    terms = model.loss_terms((torch.rand(8, 1, 28, 28), None))
    assert torch.allclose(terms["loss"], terms["recon"] + 4.0 * terms["kl"])


def test_capacity_schedule_values():
    assert capacity(0, 25, 100_000) == 0
    assert capacity(50_000, 25, 100_000) == pytest.approx(12.5)
    assert capacity(100_000, 25, 100_000) == 25
    assert capacity(10**7, 25, 100_000) == 25


def test_capacity_objective_uses_the_step(monkeypatch):
    model = BetaVAE(MLP, capacity_max=25.0, capacity_steps=100, gamma=1000.0)
    monkeypatch.setattr(BetaVAE, "global_step", property(lambda self: 40))
    model.on_test_start()  # as before every step, validation and test: C follows the trainer's step
    terms = model.loss_terms((torch.rand(8, 1, 28, 28), None))
    assert terms["capacity"].item() == pytest.approx(10.0)
    assert torch.allclose(terms["loss"], terms["recon"] + 1000.0 * (terms["kl"] - 10.0).abs())


@pytest.mark.parametrize("bad, match", [({"beta": -1.0}, "beta"), ({"latent_dim": 0}, "latent_dim"),
                                        ({"likelihood": "poisson"}, "likelihood"), ({"lr": 0.0}, "lr")])
def test_bad_hyper_parameters_are_named(bad, match):
    with pytest.raises(ConfigError, match=match):
        BetaVAE(MLP, **bad)


@pytest.mark.parametrize(("model", "key", "value"), [
    (FactorVAE, "disc_lr", -1.0), (FactorVAE, "disc_hidden", 0), (FactorVAE, "disc_layers", 0), (FactorVAE, "gamma", -5),
    (BetaTCVAE, "alpha", -1.0), (BetaTCVAE, "gamma", -1.0), (BetaTCVAE, "dataset_size", 0),
    (DIPVAE, "lambda_od", "x"), (DIPVAE, "lambda_d", -1.0), (CVAE, "prior_components", 0),
    (CVAE, "learned_prior", "yes"), (BetaVAE, "capacity_steps", 0), (VAE, "num_classes", 0),
    (VAE, "latent_dim", 2.5), (VAE, "fused_adam", "maybe"), (VAE, "obs_sigma", 0.0)])
def test_each_model_refuses_its_settings_out_of_range(model, key, value):
    with pytest.raises(ConfigError, match=f"^model.{key}={value!r}: must be"):
        model(MLP, **{key: value})


def test_burgess_rejects_sizes_it_cannot_take():
    with pytest.raises(ConfigError, match="net.image_size=32 or 64"):
        VAE({"_target_": "vae_lab.nets.burgess.BurgessNet", "image_size": 28})


def test_gaussian_likelihood_is_in_nats():
    model = VAE(MLP, likelihood="gaussian", obs_sigma=0.1)
    terms = model.loss_terms((torch.rand(4, 1, 28, 28), None))
    assert torch.isfinite(terms["loss"])


def test_cvae_generate_shapes_and_label_checks():
    model = CVAE({"_target_": "vae_lab.nets.seed_conv.SeedConvNet"})
    assert model.generate(labels=torch.tensor([3, 3, 7])).shape == (3, 1, 28, 28)
    assert model.generate(20).shape == (20, 1, 28, 28)
    with pytest.raises(ConfigError, match="out of range"):
        model.generate(labels=torch.tensor([10]))
    with pytest.raises(ConfigError, match="not conditional"):
        VAE(MLP).generate(labels=torch.tensor([1]))


def _train_steps(model, batches, steps):
    opt = model.configure_optimizers()
    model.train()
    for i in range(steps):
        loss = model.loss_terms(batches[i % len(batches)])["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


COMBOS = list(itertools.product(["vae", "cvae", "beta_vae"], ["burgess", "seed_conv", "mlp", "conv"],
                                ["mnist", "fashion_mnist"]))


@pytest.mark.parametrize("model_name, net, data", COMBOS)
def test_every_model_net_dataset_composes_and_learns(tmp_path, data_dir, model_name, net, data):
    cfg = compose_cfg(tmp_path, f"model={model_name}", f"net={net}", f"data={data}", "data.train_subset=640",
                      "data.batch_size=64")
    torch.manual_seed(0)
    dm = instantiate(cfg.data)
    dm.setup()
    model = instantiate(cfg.model, net=cfg.net, _recursive_=False)
    batches = list(dm.train_dataloader())
    probe = batches[0]
    model.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        before = model.loss_terms(probe)["loss"].item()
    _train_steps(model, batches, 30)
    model.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        after = model.loss_terms(probe)["loss"].item()
    assert after < 0.9 * before, f"loss {before:.1f} → {after:.1f}"


def test_cvae_samples_follow_their_label(tmp_path, data_dir):
    cfg = compose_cfg(tmp_path, "model=cvae", "net=mlp", "data.train_subset=12000", "data.batch_size=100")
    torch.manual_seed(0)
    dm = instantiate(cfg.data)
    dm.setup()
    model = instantiate(cfg.model, net=cfg.net, _recursive_=False)
    _train_steps(model, list(dm.train_dataloader()), 400)
    model.eval()
    train = dm.splits["train"]
    class_means = torch.stack([train.images[train.labels == k].float().mean(0).flatten() / 255 for k in range(10)])
    samples = model.generate(labels=torch.arange(10).repeat_interleave(50), temperature=0.5).view(10, 50, -1).mean(1)
    nearest = torch.cdist(samples, class_means).argmin(1)
    assert (nearest == torch.arange(10)).float().mean() >= 0.9, nearest


@pytest.mark.parametrize("options", [["trainer.precision=bf16-mixed"], ["trainer.precision=32-true"],
                                     ["model.channels_last=true"], ["model.channels_last=auto"], ["model.compile=true", "net=mlp"],
                                     ["model.cuda_graph=true"], ["data.steps_per_batch=3", "model.channels_last=true"]])
def test_speed_options_train_with_finite_losses(tmp_path, data_dir, options):
    from vae_lab.train import build

    cfg = compose_cfg(tmp_path, "model=beta_vae", *options, "data.train_subset=512", "data.batch_size=64",
                      "trainer.log_every_n_steps=1")
    datamodule, model, trainer = build(cfg, callbacks=[], logger=False, max_steps=3, limit_val_batches=0,
                                       enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 3
    loss = trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss)


def _fit_steps(tmp_path, *overrides, max_steps=6):
    from vae_lab.train import build

    cfg = compose_cfg(tmp_path, "+arm=capacity", "net=mlp", "model.capacity_steps=4", "data.train_subset=512",
                      "data.batch_size=64", "trainer.precision=32-true", *overrides)
    datamodule, model, trainer = build(cfg, callbacks=[], logger=False, max_steps=max_steps, limit_val_batches=0,
                                       enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=datamodule)
    return model, trainer


def test_several_steps_per_batch_train_exactly_as_one_step_per_batch(tmp_path, data_dir):
    """Same batches, same order, one optimiser step each (the capacity C advancing per step): the same weights."""
    one, one_trainer = _fit_steps(tmp_path, "data.steps_per_batch=1")
    three, three_trainer = _fit_steps(tmp_path, "data.steps_per_batch=3")
    assert one_trainer.global_step == three_trainer.global_step == 6
    assert three.capacity_now.item() == one.capacity_now.item() > 0
    for a, b in zip(one.state_dict().values(), three.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("steps_per_batch", [1, 3])
def test_the_cosine_schedule_decays_the_rate_to_zero_by_the_last_step(tmp_path, data_dir, steps_per_batch):
    """Its length is counted in optimiser steps, whatever number of them a Lightning batch holds."""
    from vae_lab.train import build

    cfg = compose_cfg(tmp_path, "model=cvae", "model.lr_schedule=cosine", "data.train_subset=256",
                      "data.batch_size=64", "trainer.max_epochs=2", f"data.steps_per_batch={steps_per_batch}")
    datamodule, model, trainer = build(cfg, callbacks=[], logger=False, limit_val_batches=0,
                                       enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 8 and trainer.lr_scheduler_configs[0].interval == "step"
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_an_unknown_schedule_and_a_scheduled_factor_vae_are_refused():
    with pytest.raises(ConfigError, match="lr_schedule"):
        VAE(MLP, lr_schedule="linear")
    with pytest.raises(ConfigError, match="choose one"):
        VAE(MLP, cuda_graph=True, compile=True)
    with pytest.raises(ConfigError, match="FactorVAE"):
        FactorVAE(MLP, lr_schedule="cosine")


@pytest.mark.parametrize("arm", sorted(p.stem for p in (CONF / "arm").glob("*.yaml") if not p.stem.startswith("study_")))
def test_every_comparison_arm_composes(tmp_path, arm):  # the study_* arms need the study grid: test_unsupervised_study
    cfg = compose_cfg(tmp_path, "+experiment=compare", f"+arm={arm}")
    model = instantiate(cfg.model, net=cfg.net, _recursive_=False)
    assert cfg.trainer.max_epochs == 10 and model.image_size == cfg.data.image_size
    if arm.startswith("beta_") and arm.split("_")[1].isdigit():
        assert model.beta == float(arm.split("_")[1])
    if arm == "capacity":
        assert model.hparams.capacity_max > 0
    if arm == "cvae":
        assert model.components == 10 and model.prior_logits is not None, "the recommended CVAE's mixture prior"
        assert model.hparams.lr == 2e-3
    if arm == "cvae_seed_conv":
        assert not model.hparams.learned_prior and model.hparams.lr == 1e-3, "the design notes' CVAE as it is"


@pytest.mark.parametrize("experiment", ["disentangle", "disentangle_cpu"])
def test_the_disentangle_arms_take_their_experiments_settings(tmp_path, experiment):
    """Burgess et al.'s learning rate for the capacity arm; the CPU variant's narrower FactorVAE discriminator."""
    capacity = compose_cfg(tmp_path, f"+experiment={experiment}", "+arm=capacity")
    assert instantiate(capacity.model, net=capacity.net, _recursive_=False).hparams.lr == 5e-4
    factor = compose_cfg(tmp_path, f"+experiment={experiment}", "+arm=factor_vae")
    model = instantiate(factor.model, net=factor.net, _recursive_=False)
    assert model.discriminator[0].out_features == (256 if experiment.endswith("cpu") else 1000)
    elsewhere = compose_cfg(tmp_path, "+experiment=compare", "+arm=capacity")
    assert instantiate(elsewhere.model, net=elsewhere.net, _recursive_=False).hparams.lr == 1e-3


@pytest.mark.parametrize("overrides", [["model.prior_components=1"], ["model.prior_components=10"],
                                       ["model.latent_dim=2"], ["model.latent_dim=16"]])
def test_the_cvae_design_and_latent_sweeps_compose(tmp_path, overrides):
    """Every cell of cvae_design / cvae_latent builds its model (a mixture prior needs the learned prior)."""
    experiment = "cvae_design" if "components" in overrides[0] else "cvae_latent"
    cfg = compose_cfg(tmp_path, f"+experiment={experiment}", "+arm=cvae", *overrides)
    model = instantiate(cfg.model, net=cfg.net, _recursive_=False)
    assert model.conditional and model.prior_net is not None


def test_a_loaded_capacity_model_keeps_the_capacity_it_reached(tmp_path):
    """evaluate has no training step: the loaded model's C is the one at the checkpoint's step, not 0."""
    model = BetaVAE(MLP, capacity_max=25.0, capacity_steps=100, gamma=10.0)
    torch.save({"vae_lab_model": "vae_lab.models.beta_vae.BetaVAE", "hyper_parameters": dict(model.hparams),
                "state_dict": model.state_dict(), "global_step": 60}, tmp_path / "c.ckpt")
    loaded = load_model(tmp_path / "c.ckpt")
    terms = loaded.loss_terms((torch.rand(8, 1, 28, 28), None))
    assert terms["capacity"].item() == pytest.approx(15.0)


def test_kl_to_a_learned_prior_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.7, -1.2]]), torch.tensor([[-0.5, 0.3]])
    p_mu, p_logvar = torch.tensor([[0.2, 0.5]]), torch.tensor([[0.4, -0.7]])
    z = ReparametrizationMixin.reparametrize(mu.expand(400_000, 2), logvar.expand(400_000, 2))
    log_q = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z)
    log_p = torch.distributions.Normal(p_mu, (0.5 * p_logvar).exp()).log_prob(z)
    closed = ReparametrizationMixin.kl_per_dim(mu, logvar, p_mu, p_logvar)[0]
    assert torch.allclose((log_q - log_p).mean(0), closed, atol=0.01)


def test_cvae_learned_prior_is_used_for_sampling():
    model = CVAE({"_target_": "vae_lab.nets.mlp.MLPNet", "hidden": [32]}, learned_prior=True, latent_dim=3)
    assert model.prior(torch.tensor([4]))[0].abs().sum() == 0, "starts as N(0, I)"
    with torch.no_grad():
        model.prior_net.weight[4, :3] = 100.0
    seen = []
    model.decode = lambda z, y: seen.append(z) or torch.zeros(len(z), 1, 28, 28)
    model.generate(labels=torch.tensor([4, 4]), temperature=0.0)
    assert torch.equal(seen[0], torch.full((2, 3), 100.0))


def test_mixture_prior_density_sampling_and_kl_agree():
    """A 3-component p(z|y): log_prior matches torch.distributions, samples follow the picked component,
    and the KL estimate averages to E_q[log q − log p]."""
    torch.manual_seed(0)
    model = CVAE({"_target_": "vae_lab.nets.mlp.MLPNet", "hidden": [32]}, learned_prior=True, prior_components=3,
                 latent_dim=2)
    with torch.no_grad():
        model.prior_logits.weight[7] = torch.tensor([0.0, 1.0, -1.0])
    mu, logvar, log_pi = model.mixture(torch.tensor([7]))
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=log_pi[0]),
        torch.distributions.Independent(torch.distributions.Normal(mu[0], (0.5 * logvar[0]).exp()), 1))
    z = torch.randn(50, 1, 2) * 2
    assert torch.allclose(model.log_prior(z, torch.tensor([7])), reference.log_prob(z), atol=1e-5)
    samples = model.sample_latents(20000, torch.full((20000,), 7), temperature=1.0)
    assert torch.allclose(samples.mean(0), reference.mean, atol=0.05)
    assert torch.allclose(samples.var(0), reference.variance, atol=0.1)
    q_mu, q_logvar = torch.tensor([[0.3, -0.4]]).expand(20000, 2), torch.full((20000, 2), -1.0)
    zq = model.reparametrize(q_mu, q_logvar)
    kl, _ = model.kl_terms(q_mu, q_logvar, zq, torch.full((20000,), 7))
    expected = (torch.distributions.Normal(q_mu, (0.5 * q_logvar).exp()).log_prob(zq).sum(-1) - reference.log_prob(zq))
    assert kl.shape == (20000,) and torch.allclose(kl, expected, atol=1e-4) and kl.mean() > 0


def test_mixture_prior_needs_the_learned_prior():
    with pytest.raises(ConfigError, match="prior_components"):
        CVAE({"_target_": "vae_lab.nets.mlp.MLPNet", "hidden": [32]}, prior_components=4)


def test_the_train_timer_counts_every_image_of_a_grouped_batch():
    from types import SimpleNamespace

    from vae_lab.timing import TrainTimer

    timer, trainer = TrainTimer(), SimpleNamespace(world_size=1)
    pair = (torch.zeros(5, 1, 28, 28), torch.zeros(5))
    timer.on_train_batch_end(trainer, None, None, [pair, pair, (torch.zeros(3, 1, 28, 28), torch.zeros(3))], 0)
    timer.on_train_batch_end(trainer, None, None, pair, 1)
    assert timer.images == 18


def test_the_train_timer_resumes_after_a_validation_within_the_epoch(monkeypatch):
    """trainer.val_check_interval < 1: the training after a mid-epoch validation counts, the validation does not
    (it is counted as validation)."""
    from types import SimpleNamespace

    from vae_lab import timing

    clock = iter([0.0, 10.0, 25.0, 30.0, 32.0])  # epoch start, validation start and end, next batch, epoch end
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    timer, trainer = timing.TrainTimer(), SimpleNamespace(world_size=1)
    timer.on_train_epoch_start(trainer, None)
    timer.on_validation_start(trainer, None)
    timer.on_validation_end(trainer, None)
    timer.on_train_batch_start(trainer, None, None, 5)
    timer.on_train_epoch_end(trainer, None)
    assert timer.train_seconds == 12.0  # 10 s before the validation, 2 s after it
    assert timer.validation_seconds == 15.0


@pytest.mark.parametrize("every", [50, 0])
def test_the_finite_loss_guard_checks_before_a_validation_during_fit(every):
    """A validation within the epoch may end in a checkpoint: the guard looks first (trainer.training is False
    then), not during the sanity check; with every_n_steps ≤ 0 it checks no batch, only those moments."""
    from types import SimpleNamespace

    from pytorch_lightning.trainer.states import TrainerFn

    from vae_lab.guards import FiniteLossGuard, NonFiniteLossError

    guard = FiniteLossGuard(every_n_steps=every)
    module = SimpleNamespace(_train_sums=torch.tensor([float("nan")]), _train_names=["loss"], _train_count=1,
                             parameters=lambda: [torch.zeros(3)])
    trainer = SimpleNamespace(global_step=100, current_epoch=0, training=False, sanity_checking=True,
                              state=SimpleNamespace(fn=TrainerFn.FITTING))
    guard.on_validation_start(trainer, module)  # the sanity check: nothing trained yet
    if not every:
        guard.on_train_batch_end(trainer, module, None, None, 0)
    trainer.sanity_checking = False
    with pytest.raises(NonFiniteLossError, match="step 100"):
        guard.on_validation_start(trainer, module)


def test_a_checkpoint_from_automatic_optimisation_resumes_at_its_step(tmp_path, data_dir):
    """Checkpoints written before the models took their own steps kept the count in Lightning's automatic loop."""
    from vae_lab.models.training import AUTOMATIC, MANUAL
    from vae_lab.train import build

    _, trainer = _fit_steps(tmp_path, max_steps=3)
    trainer.save_checkpoint(tmp_path / "old.ckpt")
    checkpoint = torch.load(tmp_path / "old.ckpt", weights_only=False)
    loops = checkpoint["loops"]["fit_loop"]
    step = loops[f"{MANUAL}.optim_step_progress"]
    zero_grad = {k: {**v, "started": v["completed"]} for k, v in step.items()}
    loops[f"{AUTOMATIC}.optim_progress"] = {"optimizer": {"step": copy.deepcopy(step), "zero_grad": zero_grad}}
    step["total"]["completed"] = step["total"]["ready"] = 0  # as the automatic-optimisation code wrote it
    torch.save(checkpoint, tmp_path / "old.ckpt")
    cfg = compose_cfg(tmp_path, "+arm=capacity", "net=mlp", "model.capacity_steps=4", "data.train_subset=512",
                      "data.batch_size=64", "trainer.precision=32-true")
    datamodule, resumed, trainer = build(cfg, callbacks=[], logger=False, max_steps=5, limit_val_batches=0,
                                         enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(resumed, datamodule=datamodule, ckpt_path=tmp_path / "old.ckpt")
    assert trainer.global_step == 5 and resumed._train_batches == 2  # steps 4 and 5, not 5 from a reset count


def test_the_finite_loss_guard_checks_every_n_steps_when_batches_hold_several():
    """With 8 steps per batch global_step skips most multiples of 50: the guard still looks every ≥ 50 steps."""
    from types import SimpleNamespace

    from vae_lab.guards import FiniteLossGuard, NonFiniteLossError

    guard = FiniteLossGuard(every_n_steps=50)
    module = SimpleNamespace(_train_sums=torch.tensor([float("nan")]), _train_names=["loss"], _train_count=1)
    trainer = SimpleNamespace(global_step=0, current_epoch=0)
    for step in range(8, 49, 8):
        trainer.global_step = step
        guard.on_train_batch_end(trainer, module, None, None, 0)
    trainer.global_step = 56
    with pytest.raises(NonFiniteLossError, match="step 56"):
        guard.on_train_batch_end(trainer, module, None, None, 0)


def test_train_scalars_are_logged_once_per_n_lightning_batches(tmp_path, data_dir, monkeypatch):
    """The batches Lightning writes to the logger, and no others: 12 steps, 3 per batch, N = 2 → batches 2 and 4."""
    from vae_lab.models.base import BaseVAE

    calls = []
    monkeypatch.setattr(BaseVAE, "log", lambda self, name, *a, **k: calls.append((name, self.global_step)))
    _fit_steps(tmp_path, "data.steps_per_batch=3", "trainer.log_every_n_steps=2", "data.train_subset=768",
               max_steps=12)
    assert [step for name, step in calls if name == "train/loss"] == [6, 12]


def test_a_resumed_run_logs_train_scalars_on_the_batches_lightning_writes(tmp_path, data_dir, monkeypatch):
    """Lightning counts its batches over the whole run: after resuming at batch 3 with N = 2 it writes batches 4 and
    6, so those must carry this step's terms (a count restarted at 0 would log batches 5 and 7); N = 0 logs none."""
    from vae_lab.models.base import BaseVAE
    from vae_lab.train import build

    _, trainer = _fit_steps(tmp_path, max_steps=3)
    trainer.save_checkpoint(tmp_path / "three.ckpt")
    calls = []
    monkeypatch.setattr(BaseVAE, "log", lambda self, name, *a, **k: calls.append((name, self.global_step)))
    for every, expected in ((2, [4, 6]), (0, [])):
        calls.clear()
        cfg = compose_cfg(tmp_path, "+arm=capacity", "net=mlp", "model.capacity_steps=4", "data.train_subset=512",
                          "data.batch_size=64", "trainer.precision=32-true", f"trainer.log_every_n_steps={every}")
        datamodule, resumed, trainer = build(cfg, callbacks=[], logger=False, max_steps=7, limit_val_batches=0,
                                             enable_checkpointing=False, enable_progress_bar=False)
        trainer.fit(resumed, datamodule=datamodule, ckpt_path=tmp_path / "three.ckpt")
        assert [step for name, step in calls if name == "train/loss"] == expected


def test_a_checkpoint_from_a_cuda_graph_run_resumes_on_the_cpu_without_graphs(tmp_path, data_dir):
    """A graphed run saves capturable Adam groups with a tensor rate; a resumed run takes this run's settings."""
    from vae_lab.train import build

    _, trainer = _fit_steps(tmp_path, "model.lr_schedule=cosine", max_steps=3)
    trainer.save_checkpoint(tmp_path / "graphed.ckpt")
    checkpoint = torch.load(tmp_path / "graphed.ckpt", weights_only=False)
    for group in checkpoint["optimizer_states"][0]["param_groups"]:
        group["lr"], group["capturable"] = torch.tensor(float(group["lr"])), True  # as a graphed run writes them
    stamp(checkpoint)  # and digests them
    torch.save(checkpoint, tmp_path / "graphed.ckpt")
    cfg = compose_cfg(tmp_path, "+arm=capacity", "net=mlp", "model.capacity_steps=4", "data.train_subset=512",
                      "data.batch_size=64", "trainer.precision=32-true", "model.lr_schedule=cosine",
                      "model.fused_adam=false")  # non-fused Adam refuses capturable groups on the CPU
    datamodule, resumed, trainer = build(cfg, callbacks=[], logger=False, max_steps=6, limit_val_batches=0,
                                         enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(resumed, datamodule=datamodule, ckpt_path=tmp_path / "graphed.ckpt")
    group = trainer.optimizers[0].param_groups[0]
    assert trainer.global_step == 6 and not group["capturable"] and isinstance(group["lr"], float)


@pytest.mark.parametrize("flush", [True, False])
def test_denormals_are_flushed_while_training_and_only_then(tmp_path, data_dir, flush, monkeypatch):
    """`model.flush_denormal`: a denormal float reads as zero inside the training step, and is itself again after."""
    from vae_lab.models.base import BaseVAE

    seen = []
    step = BaseVAE.training_step
    monkeypatch.setattr(BaseVAE, "training_step",
                        lambda self, *a: seen.append((torch.tensor(1e-40) * 1.0).item()) or step(self, *a))
    _fit_steps(tmp_path, f"model.flush_denormal={str(flush).lower()}", max_steps=2)
    assert len(seen) == 2 and all((v == 0.0) if flush else (v > 0.0) for v in seen)
    assert (torch.tensor(1e-40) * 1.0).item() > 0.0


@pytest.mark.parametrize("cin, cout, side", [(32, 1, 16), (74, 1, 7), (32, 32, 8)])
def test_upconv_is_the_transposed_convolution_in_every_layout(cin, cout, side):
    torch.manual_seed(0)
    up, reference = UpConv(cin, cout), nn.ConvTranspose2d(cin, cout, 4, 2, 1)
    reference.load_state_dict(up.state_dict())  # same parameters, same keys
    x = torch.randn(5, cin, side, side)
    with torch.no_grad():  # the sub-pixel form for 1-channel outputs
        for layout in (torch.contiguous_format, torch.channels_last):
            up.to(memory_format=layout)
            assert torch.allclose(up(x.contiguous(memory_format=layout)), reference(x), atol=1e-5)
    up.to(memory_format=torch.contiguous_format)
    x.requires_grad_(True)
    up(x).square().sum().backward()  # with gradients: the transposed convolution itself
    reference(x).square().sum().backward()
    assert torch.equal(up.weight.grad, reference.weight.grad)


@pytest.mark.parametrize("cout", [32, 1])
def test_channels_last_training_takes_the_split_backward_with_the_same_gradients(cout, monkeypatch):
    from vae_lab.nets import upconv

    calls = []
    monkeypatch.setattr(upconv, "transposed_conv_grad",
                        lambda *a: calls.append(a[-1]) or upconv.torch.ops.aten.convolution_backward(
                            a[0], a[1], a[2], None, [2, 2], [1, 1], [1, 1], True, [0, 0], 1,
                            [a[-1] == 0, a[-1] == 1, False])[a[-1]])
    torch.manual_seed(0)
    up, reference = UpConv(32, cout), nn.ConvTranspose2d(32, cout, 4, 2, 1)
    reference.load_state_dict(up.state_dict())
    up.to(memory_format=torch.channels_last), reference.to(memory_format=torch.channels_last)
    x = torch.randn(6, 32, 8, 8).contiguous(memory_format=torch.channels_last)
    for bf16 in (True, False):
        grads = []
        for layer in (up, reference):
            layer.zero_grad(set_to_none=True)
            xi = x.clone().requires_grad_(True)
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                out = layer(xi)
            assert out.dtype == (torch.bfloat16 if bf16 else torch.float32)
            out.float().square().sum().backward()
            grads.append([out, xi.grad, layer.weight.grad, layer.bias.grad])
        (out, grad_x, grad_w, grad_b), (out_ref, grad_x_ref, grad_w_ref, grad_b_ref) = grads
        for mine, theirs in ((out, out_ref), (grad_x, grad_x_ref), (grad_w, grad_w_ref)):
            assert torch.equal(mine, theirs)  # the same oneDNN primitives, asked separately
        assert torch.allclose(grad_b, grad_b_ref, rtol=1e-2 if bf16 else 1e-5)  # summed in another order
    assert calls == [0, 1] * 2  # the split path ran (input's gradient, then the weight's), in both precisions


def test_the_bf16_image_layer_sums_in_fp32():
    torch.manual_seed(0)
    up, reference = UpConv(32, 1), nn.ConvTranspose2d(32, 1, 4, 2, 1)
    reference.load_state_dict(up.state_dict())
    x = torch.randn(5, 32, 16, 16)
    with torch.no_grad():
        image = up.to(torch.bfloat16)(x.bfloat16())
        expected = reference(x)
    assert image.dtype == torch.float32  # the shifted sums and the logits leave bf16
    assert (image - expected).abs().max() < 0.05 * expected.abs().max()  # bf16's rounding, not a wrong placement


@pytest.mark.parametrize("side", [28, 32, 64])
def test_the_gradient_free_bernoulli_nll_equals_the_elementwise_one(side):
    torch.manual_seed(0)
    logits = torch.randn(50, 1, side, side) * 8
    logits[0, 0, 0, :4] = torch.tensor([0.0, 100.0, -100.0, 1e-30])
    x = torch.rand_like(logits)
    exact = F.binary_cross_entropy_with_logits(logits.double(), x.double(), reduction="none").flatten(1).sum(1)
    with torch.no_grad():
        fast = nll(logits, x)
    assert torch.allclose(fast.double(), exact, rtol=1e-6, atol=1e-3)
    assert torch.allclose(nll(logits, x).double(), exact, rtol=1e-6, atol=1e-3)  # the training form


@pytest.mark.parametrize("amx", [True, False])
def test_auto_channels_last_takes_the_burgess_net_on_an_amx_cpu_only(monkeypatch, amx):
    from vae_lab.models import training

    monkeypatch.setattr(training, "amx_cpu", lambda: amx)
    burgess = {"_target_": "vae_lab.nets.burgess.BurgessNet", "image_size": 32}
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert VAE(burgess).trains_channels_last(cpu) is amx  # auto is the default
    assert not VAE(burgess).trains_channels_last(gpu)  # not measured there
    assert not VAE(MLP).trains_channels_last(cpu)  # no convolutions
    seed_conv = {"_target_": "vae_lab.nets.seed_conv.SeedConvNet"}
    assert not CVAE(seed_conv, learned_prior=False).trains_channels_last(cpu)  # one conv: measured slower
    assert VAE(MLP, channels_last=True).trains_channels_last(cpu) and not VAE(burgess, channels_last=False) \
        .trains_channels_last(cpu)


def test_a_bad_channels_last_setting_is_named():
    with pytest.raises(ConfigError, match="model.channels_last='yes'"):
        VAE(MLP, channels_last="yes")


@pytest.mark.parametrize("net", [{"_target_": "vae_lab.nets.burgess.BurgessNet", "image_size": 32},
                                 {"_target_": "vae_lab.nets.conv.ConvNet", "image_size": 28}])
def test_a_channels_last_decoder_feeds_its_first_transposed_conv_channels_last(net):
    torch.manual_seed(0)
    model = CVAE(net, learned_prior=False) if "ConvNet" in net["_target_"] else VAE(net)
    z, y = torch.randn(6, 10), (torch.arange(6) % 10 if model.conditional else None)
    seen = []
    first = model.net.deconv[0] if hasattr(model.net, "deconv") else model.net.up1[0]
    first.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    with torch.no_grad():
        contiguous = model.decode(z, y)
        model.to(memory_format=torch.channels_last)
        last = model.decode(z, y)
    assert seen == [True, False]  # channels-last weights get channels-last maps
    assert torch.allclose(contiguous, last, atol=1e-5)


def test_last_ckpt_is_the_latest_epoch_whatever_the_best(tmp_path, data_dir):
    """Lightning's save_last writes last.ckpt only when the monitored loss improves: resume and evaluate would
    read the best epoch's weights. Here "best" means the highest val/loss, so it stays early while training goes
    on; last.ckpt must still be the final epoch's, and the best checkpoint is kept beside it."""
    from vae_lab.train import build

    cfg = compose_cfg(tmp_path, "net=mlp", "data.train_subset=512", "data.batch_size=64", "trainer.max_epochs=3",
                      "callbacks.checkpoint.mode=max", "trainer.enable_progress_bar=false")
    datamodule, model, trainer = build(cfg, logger=False)
    trainer.fit(model, datamodule=datamodule)
    folder = tmp_path / "checkpoints"
    last = torch.load(folder / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == trainer.global_step == 24
    assert torch.equal(last["state_dict"]["net.decoder.0.weight"], model.state_dict()["net.decoder.0.weight"])
    assert len(list(folder.glob("best-epoch*.ckpt"))) == 1


def test_images_are_logged_at_the_step_of_the_scalar_curves(tmp_path):
    """With K optimiser steps per Lightning batch, global_step runs K times ahead of the batches Lightning
    logs scalars at; the pictures go where the curves are."""
    from types import SimpleNamespace

    from vae_lab.viz.callbacks import ImageLogger

    cfg = compose_cfg(tmp_path, "net=mlp")
    model = instantiate(cfg.model, net=cfg.net, _recursive_=False)
    steps = []
    writer = SimpleNamespace(add_image=lambda tag, grid, step: steps.append(step),
                             add_figure=lambda tag, fig, step, close: steps.append(step))
    trainer = SimpleNamespace(global_step=14, loggers=[SimpleNamespace(experiment=writer)],
                              fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=7)))
    x = torch.rand(8, 1, 28, 28)
    ImageLogger(n=2).log_images(trainer, model, x, torch.arange(8) % 10)
    assert steps == [7, 7, 7, 7]


def test_the_finite_loss_guard_stops_every_process_when_one_sees_a_nan():
    """Under DDP a NaN on one process alone must stop all of them (a lone stop would leave the rest waiting)."""
    from types import SimpleNamespace

    from vae_lab.guards import FiniteLossGuard, NonFiniteLossError

    decisions = []

    def reduce_boolean_decision(decision, all=True):  # Lightning's own signature
        decisions.append((decision, all))
        return True  # another process's loss is not finite

    module = SimpleNamespace(_train_sums=torch.tensor([1.0]), _train_names=["loss"], _train_count=1)
    trainer = SimpleNamespace(global_step=60, current_epoch=1, world_size=2,
                              strategy=SimpleNamespace(reduce_boolean_decision=reduce_boolean_decision))
    with pytest.raises(NonFiniteLossError, match="step 60 \\(epoch 1; on another process\\)"):
        FiniteLossGuard(every_n_steps=50).on_train_batch_end(trainer, module, None, None, 0)
    assert decisions == [(False, False)]  # this process's own verdict, stopping if any process's is bad


def test_the_finite_loss_guard_checks_the_weights_before_a_checkpoint():
    """The last update of an epoch can break the weights after a finite loss: the epoch's end looks at them too."""
    from types import SimpleNamespace

    from vae_lab.guards import FiniteLossGuard, NonFiniteLossError

    weights = [torch.zeros(3), torch.tensor([0.0, float("inf")])]
    module = SimpleNamespace(_train_sums=torch.tensor([1.0]), _train_names=["loss"], _train_count=1,
                             parameters=lambda: weights)
    trainer = SimpleNamespace(global_step=430, current_epoch=0)
    guard = FiniteLossGuard(every_n_steps=1)
    guard.on_train_batch_end(trainer, module, None, None, 0)  # per batch: the loss sums only, no weight sync
    with pytest.raises(NonFiniteLossError, match="non-finite training weights at step 430"):
        guard.on_train_epoch_end(trainer, module)
    weights[1] = torch.zeros(2)
    guard.on_train_epoch_end(trainer, module)


def test_a_collapsed_model_says_so_on_its_traversal_picture():
    """No active unit: one row, titled as collapsed, instead of a row per latent that all look alike; its row label
    names the latent, its KL and the z range."""
    from vae_lab.viz import grids

    torch.manual_seed(0)
    model = VAE(MLP, latent_dim=6).eval()
    x = torch.rand(32, 1, 28, 28)
    with torch.no_grad():
        [m for m in model.net.encoder.modules() if isinstance(m, torch.nn.Linear)][-1].weight.zero_()
    t = grids.traversal(model, x, None, steps=5)
    assert t.active_units == 0 and len(t.dims) == 1 and t.images.shape[0] == 5
    fig = grids.traversal_figure(t)
    assert fig.axes[0].get_title().startswith("collapsed: no active units")
    label = fig.axes[0].get_yticklabels()[0].get_text()
    assert label.startswith(f"z{t.dims[0]}  KL ") and "z∈[" in label
    with torch.no_grad():  # the same model with an encoder whose means vary: a row per latent, most KL first
        [m for m in model.net.encoder.modules() if isinstance(m, torch.nn.Linear)][-1].weight.normal_(0, 1)
    t = grids.traversal(model, x, None, steps=5)
    assert t.active_units > 0 and sorted(t.dims) == list(range(6)) and t.kl == sorted(t.kl, reverse=True)
    assert not grids.traversal_figure(t).axes[0].get_title().startswith("collapsed")


def test_the_mixture_priors_per_dimension_kl_is_per_dimension_and_bounds_the_kl():
    """Σ_d kl_dim + KL(r‖π) bounds the mixture KL from above (Monte Carlo), and the latents' shares differ; with one
    component it is the analytic per-coordinate KL."""
    torch.manual_seed(0)
    model = CVAE({"_target_": "vae_lab.nets.mlp.MLPNet", "hidden": [32]}, learned_prior=True, prior_components=3,
                 latent_dim=4)
    y = torch.full((1,), 7)
    q_mu, q_logvar = torch.tensor([[0.3, -2.0, 1.0, 0.0]]), torch.tensor([[-1.0, 0.0, -2.0, 0.5]])
    kl_dim = model.kl_per_dimension(q_mu, q_logvar, y)[0]
    p_mu, p_logvar, log_pi = model.mixture(y)
    per_component = model.kl_per_dim(q_mu.unsqueeze(1), q_logvar.unsqueeze(1), p_mu, p_logvar).sum(-1)[0]
    r = torch.softmax(log_pi[0] - per_component, dim=-1)
    bound = kl_dim.sum() + (r * (r.log() - log_pi[0])).sum()
    z = model.reparametrize(q_mu.expand(200_000, 4), q_logvar.expand(200_000, 4))
    sampled, _ = model.kl_terms(q_mu.expand(200_000, 4), q_logvar.expand(200_000, 4), z, y.expand(200_000))
    assert len(set(kl_dim.tolist())) == 4 and bound >= sampled.mean() - 0.02
    single = CVAE({"_target_": "vae_lab.nets.mlp.MLPNet", "hidden": [32]}, learned_prior=True, latent_dim=4)
    assert torch.allclose(single.kl_per_dimension(q_mu, q_logvar, y), single.kl_per_dim(q_mu, q_logvar))



@pytest.mark.parametrize("hooked", [False, True])
def test_steps_go_straight_through_torch_unless_a_callback_hooks_into_them(tmp_path, data_dir, hooked):
    """Lean steps (no Lightning wrappers) count in the global step as wrapped ones do, and give the same weights; a
    callback on the step's hooks turns them off, and is called once per step."""
    import pytorch_lightning as pl

    from vae_lab.train import build

    class Hook(pl.Callback):
        calls = 0

        def on_before_optimizer_step(self, trainer, module, optimizer):
            Hook.calls += 1

    weights = []
    for lean in (True, False):
        cfg = compose_cfg(tmp_path, "model=vae", "net=mlp", "data.train_subset=200", "data.batch_size=20",
                          "data.steps_per_batch=2", "trainer.precision=32-true")
        callbacks = [Hook()] if hooked else []
        torch.manual_seed(0)
        datamodule, model, trainer = build(cfg, callbacks=callbacks, logger=False, max_steps=12, max_epochs=-1,
                                           enable_checkpointing=False, limit_val_batches=0, enable_progress_bar=False)
        if not lean:
            model.lean_steps = lambda: False
        trainer.fit(model, datamodule=datamodule)
        assert trainer.global_step == 12 and model.__dict__["_lean"] is (lean and not hooked)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))
    assert Hook.calls == (24 if hooked else 0)
