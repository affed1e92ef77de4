"""`model.cuda_graph=true`: a whole training step as one CUDA graph. These need a GPU and are skipped without one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import compose_cfg
from vae_lab.models.graphed import StepGraph

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


EVERY_FIFTH_SMALL = [8 if i % 5 == 4 else 16 for i in range(12)]


def _regression(graphed: bool, sizes: list[int] = EVERY_FIFTH_SMALL) -> tuple[nn.Module, list[float], StepGraph]:
    """A noiseless model under Adam and a cosine schedule, one step per batch size in `sizes`."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).cuda()
    adam = torch.optim.Adam(net.parameters(), lr=torch.tensor(0.01, device="cuda"), capturable=True, fused=True)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(adam, T_max=len(sizes))

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        loss = F.mse_loss(net(x).squeeze(1), y)
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        return {"loss": loss}

    graph, data = StepGraph(net, step, warmup=2), torch.Generator().manual_seed(1)
    losses, graph.replayed = [], 0
    for n in sizes:
        x = torch.randn(n, 8, generator=data)
        batch = (x.cuda(), x.sum(1).sin().cuda())
        terms, used = graph(batch) if graphed else (step(batch), False)
        losses.append(terms["loss"].item())
        graph.replayed += used
        cosine.step()
    return net, losses, graph


def test_replayed_steps_train_exactly_as_eager_ones():
    """Warm-up, capture, replays, eager steps for another shape between them, an in-place schedule: same weights."""
    eager, eager_losses, _ = _regression(graphed=False)
    graphed, graphed_losses, graph = _regression(graphed=True)
    assert graph.replayed == 12 - 2 - 2   # two warm-up steps, two smaller batches
    assert graphed_losses == pytest.approx(eager_losses, rel=1e-5)
    for a, b in zip(eager.parameters(), graphed.parameters()):
        torch.testing.assert_close(a, b)


def test_the_captured_shape_is_one_that_repeats():
    """A different shape during warm-up restarts it: the graph is captured at the batches that keep coming."""
    _, eager_losses, _ = _regression(graphed=False, sizes=[16, 8, 16, 16, 16, 16])
    _, graphed_losses, graph = _regression(graphed=True, sizes=[16, 8, 16, 16, 16, 16])
    assert graph.inputs[0].shape[0] == 16 and graph.replayed == 2
    assert graphed_losses == pytest.approx(eager_losses, rel=1e-5)


def _fit(tmp_path, *overrides: str, max_steps: int = 12, ckpt_path=None):
    from vae_lab.train import build

    cfg = compose_cfg(tmp_path, "trainer=gpu", "data.train_subset=500", "data.batch_size=64",
                      "trainer.log_every_n_steps=1", *overrides)
    datamodule, model, trainer = build(cfg, callbacks=[], logger=False, max_steps=max_steps, limit_val_batches=0,
                                       enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model, trainer


@pytest.mark.parametrize("arm", ["vae", "cvae_seed_conv", "capacity", "beta_tcvae", "factor_vae"])
def test_every_model_trains_from_a_graph_and_counts_its_steps(tmp_path, data_dir, arm):
    """3 warm-up steps, a capture, replays (and the epoch's last batch of 52 eagerly) up to max_steps=24, counted in
    optimiser steps as Lightning counts them (FactorVAE takes 2 per batch): each pair of images and labels, K = 2 to
    a Lightning batch, accounts for exactly that many."""
    model, trainer = _fit(tmp_path, f"+arm={arm}", "model.cuda_graph=true", "data.steps_per_batch=2", max_steps=24)
    optimisers = len(trainer.optimizers)
    assert trainer.global_step == 24
    assert model._train_batches * 2 * optimisers == 24
    assert model.__dict__["_step_graph"].graph is not None
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    if arm == "capacity":
        assert model.capacity_now.item() > 0


def test_graphed_training_matches_eager_training(tmp_path, data_dir):
    """fp32, a cosine schedule read from a device tensor: the same loss as the eager path after 12 steps."""
    common = ["+arm=capacity", "net=burgess", "net.image_size=32", "trainer.precision=32-true",
              "model.lr_schedule=cosine", "model.capacity_steps=8"]
    eager, _ = _fit(tmp_path / "eager", *common)
    graphed, trainer = _fit(tmp_path / "graphed", *common, "model.cuda_graph=true")
    assert trainer.optimizers[0].param_groups[0]["lr"].item() == pytest.approx(0.0, abs=1e-9)
    assert graphed.capacity_now.item() == eager.capacity_now.item() > 0
    for (name, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)


def test_loss_scaling_is_refused(tmp_path, data_dir):
    from vae_lab.errors import ConfigError

    with pytest.raises(ConfigError, match="16-mixed"):
        _fit(tmp_path, "model=vae", "model.cuda_graph=true", "trainer.precision=16-mixed")


def test_a_resumed_graphed_run_reads_its_rate_from_the_device(tmp_path, data_dir):
    """A checkpoint's rate comes back as a CPU tensor, which a graph would freeze at capture: it is moved back."""
    common = ["+arm=capacity", "model.lr_schedule=cosine", "model.cuda_graph=true"]
    _, trainer = _fit(tmp_path, *common, max_steps=6)
    trainer.save_checkpoint(tmp_path / "half.ckpt")
    _, trainer = _fit(tmp_path, *common, max_steps=12, ckpt_path=tmp_path / "half.ckpt")
    group = trainer.optimizers[0].param_groups[0]
    assert group["capturable"] and group["lr"].is_cuda
    assert trainer.global_step == 12 and group["lr"].item() == pytest.approx(0.0, abs=1e-9)
