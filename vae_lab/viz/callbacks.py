"""Lightning callbacks that log pictures of the model to TensorBoard: grids every few epochs, the projector at the end."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch

from vae_lab.errors import check_number
from vae_lab.viz import grids
from vae_lab.viz.projector import log_projector


class ImageLogger(pl.Callback):
    """Every few epochs (and at the last), log reconstructions, samples, traversals and class grids."""

    def __init__(self, every_n_epochs: int = 2, n: int = 8) -> None:
        check_number("callbacks.images.every_n_epochs", every_n_epochs, whole=True, minimum=1)
        self.every_n_epochs, self.n = every_n_epochs, n
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        if epoch % self.every_n_epochs and epoch != trainer.max_epochs - 1:
            return
        if self.batch is None:
            self.batch = next(iter(trainer.val_dataloaders))
        self.log_images(trainer, module, *self.batch)

    def log_images(self, trainer: pl.Trainer, module: pl.LightningModule, x: torch.Tensor, y: torch.Tensor) -> None:
        """Write every picture for the current model state at the current step."""
        was_training = module.training
        module.eval()
        step = trainer.fit_loop.epoch_loop._batches_that_stepped  # the x of Lightning's own scalars (in batches)
        images = {"images/reconstructions": grids.reconstructions(module, x, y, self.n),
                  "images/samples": grids.samples(module, self.n * self.n),
                  "images/traversals": grids.traversals(module, x, y if module.conditional else None)}
        for logger in trainer.loggers:
            writer = getattr(logger, "experiment", None)
            if not hasattr(writer, "add_image"):
                continue
            for tag, grid in images.items():
                writer.add_image(tag, grid.clamp(0, 1).cpu(), step)
            if module.conditional:
                names = getattr(trainer.datamodule, "class_names", [str(i) for i in range(module.num_classes)])
                fig = grids.labelled_rows(grids.class_grid(module, self.n).cpu(), names, "class-conditional samples")
                writer.add_figure("images/class_grid", fig, step)
                plt.close(fig)
        module.train(was_training)


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
