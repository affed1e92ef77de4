"""Lightning callbacks that log to TensorBoard: pictures every few epochs, latent histograms, the learning rate,
and the projector at the end."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch

from vae_lab.errors import check_number
from vae_lab.viz import grids
from vae_lab.viz.projector import log_projector


def writers(trainer: pl.Trainer) -> list[Any]:
    """The TensorBoard writers among the trainer's loggers (none without a logger)."""
    found = [getattr(logger, "experiment", None) for logger in trainer.loggers]
    return [w for w in found if hasattr(w, "add_image")]


def logged_step(trainer: pl.Trainer) -> int:
    """The x of Lightning's own scalars (in Lightning batches), where pictures and histograms go too."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def first_val_batch(trainer: pl.Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation loader's first batch (the same images every epoch)."""
    return next(iter(trainer.val_dataloaders))


class ImageLogger(pl.Callback):
    """Every few epochs (and at the last), log reconstructions, samples, traversals and class grids."""

    def __init__(self, every_n_epochs: int = 2, n: int = 8, pairs: int = 16) -> None:
        check_number("callbacks.images.every_n_epochs", every_n_epochs, whole=True, minimum=1)
        check_number("callbacks.images.pairs", pairs, whole=True, minimum=1)
        self.every_n_epochs, self.n, self.pairs = every_n_epochs, n, pairs
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        if epoch % self.every_n_epochs and epoch != trainer.max_epochs - 1:
            return
        if self.batch is None:
            self.batch = first_val_batch(trainer)
        self.log_images(trainer, module, *self.batch)

    def log_images(self, trainer: pl.Trainer, module: pl.LightningModule, x: torch.Tensor, y: torch.Tensor) -> None:
        """Write every picture for the current model state at the current step."""
        was_training = module.training
        module.eval()
        step = logged_step(trainer)
        labels = y if module.conditional else None
        figures = {"images/reconstructions": grids.reconstructions(module, x, y, self.pairs),
                   "images/traversals": grids.traversal_figure(grids.traversal(module, x, labels))}
        samples = grids.samples(module, self.n * self.n)
        if module.conditional:
            names = getattr(trainer.datamodule, "class_names", [str(i) for i in range(module.num_classes)])
            figures["images/class_grid"] = grids.labelled_rows(grids.class_grid(module, self.n).cpu(), names,
                                                               "class-conditional samples")
        for writer in writers(trainer):
            writer.add_image("images/samples", samples.clamp(0, 1).cpu(), step)
            for tag, fig in figures.items():
                writer.add_figure(tag, fig, step, close=False)
        for fig in figures.values():
            plt.close(fig)
        module.train(was_training)


class LatentHistograms(pl.Callback):
    """Every epoch, histograms of the posterior means μ and log-variances log σ² of the first validation batch
    (all latents together), as `latent/mu` and `latent/logvar`."""

    def __init__(self) -> None:
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        targets = writers(trainer)
        if trainer.sanity_checking or not trainer.is_global_zero or not targets:
            return
        if self.batch is None:
            self.batch = first_val_batch(trainer)
        x, y = (t.to(module.device) for t in self.batch)
        mu, logvar = module.encode(x, y if module.conditional else None)
        for writer in targets:
            writer.add_histogram("latent/mu", mu.float().cpu(), logged_step(trainer))
            writer.add_histogram("latent/logvar", logvar.float().cpu(), logged_step(trainer))


class LearningRateMonitor(pl.callbacks.LearningRateMonitor):
    """Lightning's learning-rate logger (`lr-Adam`), silent in a trainer without a logger (which it would refuse)."""

    def on_train_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)


class Projector(pl.Callback):
    """At the end of training, the first `images` test images' encoder means for TensorBoard's Projector tab (0: off)."""

    def __init__(self, images: int = 3000) -> None:
        check_number("callbacks.projector.images", images, whole=True, minimum=0)
        self.images = images

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.images or not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        if "test" not in datamodule.splits:
            datamodule.setup("test")
        ground_truth = getattr(datamodule, "ground_truth", None)
        for logger in trainer.loggers:
            writer = getattr(logger, "experiment", None)
            if hasattr(writer, "add_embedding"):
                log_projector(writer, module, datamodule.splits["test"], self.images, trainer.global_step,
                              datamodule.class_names, ground_truth.factor_names if ground_truth is not None else None)
