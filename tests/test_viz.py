"""TensorBoard's pictures: legible at a card's size, labelled, sorted, honest about short runs and collapse."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.text import Text

from vae_lab.data.mnist import CLASS_NAMES
from vae_lab.models.cvae import CVAE
from vae_lab.models.vae import VAE
from vae_lab.viz import grids
from vae_lab.viz.callbacks import Curves, pictures

MLP = {"_target_": "vae_lab.nets.mlp.MLPNet", "image_size": 28, "hidden": [32]}
FASHION = CLASS_NAMES["fashion_mnist"]


def width_px(fig: plt.Figure) -> float:
    return fig.get_size_inches()[0] * fig.dpi


def card_text_px(fig: plt.Figure, card: float = 360) -> float:
    """A figure's smallest text in pixels as the Images tab's card (about 360 px wide at 1400 px) shows it."""
    fig.canvas.draw()
    points = min(t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip())
    return points * fig.dpi / 72 * min(1.0, card / width_px(fig))


def test_a_traversal_is_legible_at_a_cards_width_and_shows_its_input_and_class():
    torch.manual_seed(0)
    model = CVAE(MLP, latent_dim=10).eval()
    with torch.no_grad():  # means that vary over the images: a row per latent
        [m for m in model.net.encoder.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(20)
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    shown = pictures(model, x, y, FASHION, n=2, pairs=4)
    fig = shown["images/traversals"]
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == 10 and width_px(fig) < 600  # about a card's width: not shrunk ~3× in one
    font_px = ax.get_yticklabels()[0].get_fontsize() * 100 / 72
    assert font_px >= 14 and font_px / width_px(fig) > 0.025
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["input", "−3"]
    assert "validation image 0 · class T-shirt/top" in ax.get_title().replace("\n", " ")
    grid = ax.get_images()[0].get_array()
    assert grid.shape[1] == 10 * 30 + 2  # the input column, then 9 steps (28 px and the grid's padding)
    assert "images/samples" not in shown  # a CVAE's prior samples: only as the grid with a row per class
    rows = [t.get_text() for t in shown["images/class_grid"].axes[0].get_yticklabels()]
    assert rows == FASHION and "a row per class" in shown["images/class_grid"].axes[0].get_title()
    for tag, picture in shown.items():
        assert card_text_px(picture) >= 9, tag  # every figure's smallest text legible at the card's size
        plt.close(picture)


def test_the_kl_per_latent_is_one_sorted_labelled_bar_figure():
    torch.manual_seed(0)
    model = CVAE(MLP, latent_dim=6, learned_prior=True, prior_components=3).eval()
    x, y = torch.rand(32, 1, 28, 28), torch.arange(32) % 10
    fig = pictures(model, x, y, None, n=2, pairs=4)["latent/kl_per_latent"]
    ax = fig.axes[0]
    with torch.no_grad():
        kl = model.kl_per_dimension(*model.encode(x, y), y).mean(0)
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == sorted(heights, reverse=True) and heights == pytest.approx(sorted(kl.tolist(), reverse=True))
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"z{d}" for d in kl.argsort(descending=True).tolist()]
    assert ax.get_ylabel() == "KL (nats)" and "largest first" in ax.get_title()
    plt.close(fig)


def test_a_near_collapsed_model_is_flagged():
    """An encoder whose means vary (active units) but a decoder that ignores z: every traversal row alike."""
    torch.manual_seed(0)
    model = VAE(MLP, latent_dim=4).eval()
    with torch.no_grad():
        [m for m in model.net.encoder.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(20)
        model.net.decoder[0].weight.zero_()
    shown = pictures(model, torch.rand(16, 1, 28, 28), torch.zeros(16, dtype=torch.long), None, n=2, pairs=4)
    t = shown["images/traversals"].axes[0].get_title()
    assert "near-collapsed" in t and "near-collapsed" in shown["latent/kl_per_latent"].axes[0].get_title()
    assert shown["images/samples"].shape[0] == 3  # an unconditional model's samples: a plain 2×2 grid
    model = VAE(MLP, latent_dim=4).eval()
    assert not grids.traversal(model, torch.rand(16, 1, 28, 28), None).still()


def test_train_and_validation_curves_are_two_coloured_series_of_the_logged_points():
    figures = []
    writer = SimpleNamespace(add_image=None, add_figure=lambda tag, fig, step, close: figures.append((tag, fig)))
    logged = [{"train_epoch/loss": 110.07, "val/loss": 109.51, "train_epoch/recon": 90.0, "val/recon": 89.0,
               "train_epoch/kl": 20.0, "val/kl": 20.5},
              {"train_epoch/loss": 100.0, "val/loss": 99.0, "train_epoch/recon": 80.0, "val/recon": 79.5,
               "train_epoch/kl": 20.0, "val/kl": 19.5}]
    trainer = SimpleNamespace(loggers=[SimpleNamespace(experiment=writer)], is_global_zero=True, current_epoch=1,
                              callback_metrics={k: torch.tensor(v) for k, v in logged[0].items()},
                              fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=5)))
    curves = Curves()
    curves.on_train_epoch_start(trainer, None)
    trainer.callback_metrics = {k: torch.tensor(v) for k, v in logged[1].items()}
    curves.on_train_end(trainer, None)
    tag, fig = figures[-1]
    assert tag == "curves/train_vs_val" and len(figures) == 2
    loss = fig.axes[0]
    train, val = loss.get_lines()
    assert (train.get_label(), val.get_label()) == ("train", "validation") and train.get_color() != val.get_color()
    assert list(train.get_xdata()) == [0, 1] and list(train.get_ydata()) == pytest.approx([110.07, 100.0])
    assert list(val.get_ydata()) == pytest.approx([109.51, 99.0])  # exactly the logged values: no smoothing
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["train", "validation"]
    assert card_text_px(fig) >= 9
    plt.close(fig)


def test_hparams_show_whole_numbers_as_whole_numbers():
    from tensorboard.plugins.hparams import api_pb2, metadata

    from vae_lab.viz.tensorboard import experiment_summary, hparam_values

    identity = {"model": "beta_vae", "net": "burgess", "dataset": "mnist", "seed": 0}
    runs = [({**identity, "test/nelbo": 100.0}, {"model.beta": 1.0, "model.latent_dim": 10, "model.lr": 1e-3}),
            ({**identity, "test/nelbo": 110.0}, {"model.beta": 4.0, "model.latent_dim": 10, "model.lr": 1e-3})]
    assert hparam_values(*runs[0]) == {"model": "beta_vae", "net": "burgess", "dataset": "mnist", "model.beta": "1",
                                       "model.latent_dim": "10", "model.lr": "0.001", "seed": "0"}
    experiment = experiment_summary(runs).value[0].metadata.plugin_data.content
    infos = {h.display_name: h for h in metadata.parse_experiment_plugin_data(experiment).hparam_infos}
    assert infos["β"].type == api_pb2.DATA_TYPE_STRING and list(infos["β"].domain_discrete) == ["1", "4"]
    assert list(infos) == ["β"] and infos["β"].differs  # the same model, net, dataset and seed: no columns


def test_the_end_of_run_values_are_one_table():
    from vae_lab.viz.tensorboard import results_table

    record = {"model": "cvae", "test/nelbo": 101.23456, "test/active_units": 8.0, "time/train_seconds": 12.5,
              "test/fid": float("nan"), "status": "ok"}
    lines = results_table(record).splitlines()
    assert lines[:2] == ["| metric | value |", "|---|--:|"] and len(lines) == 5  # NaN left out, hyper-parameters too
    assert lines[2].endswith("| 101.2 |") and lines[3].endswith("| 8 |") and lines[4].endswith("| 12.5 |")


def test_a_sweeps_tensorboard_lists_only_its_runs(tmp_path):
    """TensorBoard's data provider on a two-run sweep folder: the two runs, no empty `.`; the sweep's experiment in one."""
    import json

    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins.hparams import metadata
    from torch.utils.tensorboard import SummaryWriter

    from vae_lab.viz.tensorboard import write_sweep_experiment

    for num, beta in enumerate((1, 4)):
        run = tmp_path / f"{num}_beta_vae_mnist"
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"status": "ok", "model": "beta_vae", "net": "burgess",
                                                      "dataset": "mnist", "seed": 0, "beta": beta, "test/nelbo": 99.0}))
        with SummaryWriter(str(run / "tensorboard" / "beta_vae_mnist")) as writer:
            writer.add_scalar("Loss/val", 100.0 + beta, 1)
    assert write_sweep_experiment(tmp_path)
    multiplexer = plugin_event_multiplexer.EventMultiplexer().AddRunsFromDirectory(str(tmp_path)).Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    runs = {run.run_name for run in provider.list_runs(context.RequestContext(), experiment_id="")}
    assert runs == {f"{n}_beta_vae_mnist/tensorboard/beta_vae_mnist" for n in (0, 1)}
    experiments = [r for r, tags in multiplexer.PluginRunToTagToContent("hparams").items()
                   if metadata.EXPERIMENT_TAG in tags]
    assert experiments == ["0_beta_vae_mnist/tensorboard/beta_vae_mnist"]


def test_hparams_columns_are_what_tells_runs_apart():
    from tensorboard.plugins.hparams import metadata

    from vae_lab.viz.tensorboard import experiment_summary

    def columns(*runs):
        records = [({"model": m, "net": n, "dataset": "mnist", "seed": s, "test/nelbo": 1.0}, {}) for m, n, s in runs]
        content = experiment_summary(records).value[0].metadata.plugin_data.content
        return [h.name for h in metadata.parse_experiment_plugin_data(content).hparam_infos]

    assert columns(("vae", "mlp", 0), ("beta_vae", "burgess", 0)) == ["model"]  # each model's own net: no column
    assert columns(("vae", "mlp", 0), ("vae", "burgess", 1)) == ["net", "seed"]
    assert columns(("vae", "mlp", 0)) == ["model", "net", "dataset", "seed"]  # one run: what it is


def test_a_sweeps_jobs_are_named_by_what_it_sweeps(tmp_path, monkeypatch):
    """The keys a multirun sweeps (command line and preset), by the groups' rule; a job's run name adds its values."""
    import os

    from omegaconf import OmegaConf

    from tests.conftest import compose_cfg
    from vae_lab import SWEPT
    from vae_lab.sweep import SweepHParams

    task = ["model=vae,beta_vae", "model.beta=1,4", "seed=0,1", "trainer.log_every_n_steps=1,5", "data=mnist,cifar10",
            "+trainer.limit_train_batches=4"]
    config = OmegaConf.create({"hydra": {"overrides": {"task": task},
                                         "sweeper": {"params": {"+arm": "cvae,vae", "data.batch_size": "64,128"}}}})
    monkeypatch.setenv(SWEPT, "")
    SweepHParams().on_multirun_start(config)
    assert os.environ[SWEPT] == "arm,data.batch_size,model.beta,seed"  # model and data: in every name
    monkeypatch.setenv(SWEPT, "")
    assert compose_cfg(tmp_path, "model=beta_vae").logger.version == "beta_vae_mnist"  # outside a sweep
    monkeypatch.setenv(SWEPT, "model.beta,tags,seed")
    cfg = compose_cfg(tmp_path, "model=beta_vae", "model.beta=4", "+tags=[a/b, c]")
    assert cfg.logger.version == "beta_vae_mnist,model.beta=4,tags=_a_b,c_"  # filesystem-safe
