"""Lightning callbacks that log to TensorBoard: pictures, latent histograms, the learning rate, the projector."""

from typing import Any

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch

from vae_lab.errors import check_number
from vae_lab.metrics.latent import active_dims
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
        names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
        devices = [module.device] if module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the prior samples draw from their own copy of the random
            shown = pictures(module, x, y, names, self.n, self.pairs)  # state: logging never changes training
        for writer in writers(trainer):
            for tag, picture in shown.items():
                if isinstance(picture, torch.Tensor):
                    writer.add_image(tag, picture, step)
                else:
                    writer.add_figure(tag, picture, step, close=False)
        for picture in shown.values():
            if isinstance(picture, plt.Figure):
                plt.close(picture)
        module.train(was_training)


@torch.no_grad()
def pictures(module: pl.LightningModule, x: torch.Tensor, y: torch.Tensor, class_names: list[str] | None,
             n: int = 8, pairs: int = 16) -> dict[str, plt.Figure | torch.Tensor]:
    """A model's pictures of a validation batch by tag: reconstructions, traversal, KL bars, prior samples."""
    labels = y.to(module.device) if module.conditional else None
    names = class_names or [str(k) for k in range(module.num_classes)]
    about = f" · class {names[int(y[0])]}" if class_names is not None and y.dim() == 1 else ""
    traversal = grids.traversal(module, x, labels)
    mu, logvar = module.encode(x.to(module.device), labels)
    kl = module.kl_per_dimension(mu, logvar, labels).mean(0)
    shown: dict[str, plt.Figure | torch.Tensor] = {
        "images/reconstructions": grids.reconstructions(module, x, y, pairs),
        "images/traversals": grids.traversal_figure(traversal, f"validation image 0{about}", x[0]),
        "latent/kl_per_latent": grids.kl_bars(kl, active_dims(mu), traversal.title() if traversal.still() or
                                              not traversal.active_units else ""),
    }
    if module.conditional:
        shown["images/class_grid"] = grids.labelled_rows(grids.class_grid(module, n).cpu(), names,
                                                         "prior samples, a row per class")
    else:
        shown["images/samples"] = grids.samples(module, n * n).clamp(0, 1).cpu()
    return shown


class Curves(pl.Callback):
    """Train against validation for loss, reconstruction and KL as one figure, redrawn each epoch, unsmoothed."""

    TERMS = (("loss", "loss"), ("reconstruction (nats)", "recon"), ("KL (nats)", "kl"))

    def __init__(self) -> None:
        self.history: dict[int, dict[str, float]] = {}

    def record(self, trainer: pl.Trainer, epoch: int) -> None:
        """Keep the epoch's train and validation values; draw the figure of all epochs so far."""
        keys = [f"{stage}/{term}" for stage in ("train_epoch", "val") for _, term in self.TERMS]
        values = {k: float(trainer.callback_metrics[k]) for k in keys if k in trainer.callback_metrics}
        targets = writers(trainer)
        if not values or not targets or not trainer.is_global_zero:
            return
        self.history[epoch] = values
        fig = grids.curves_figure(self.history, self.TERMS)
        for writer in targets:
            writer.add_figure("curves/train_vs_val", fig, logged_step(trainer), close=False)
        plt.close(fig)

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:  # the epoch before is complete: its train means and its validation
            self.record(trainer, trainer.current_epoch - 1)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.record(trainer, max(self.history, default=-1) + 1)  # the last epoch: the one after those recorded


class LatentHistograms(pl.Callback):
    """Every epoch, a histogram per latent d of the first validation batch's μ and log σ²: `latent/{mu,logvar}/z<d>`."""

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
            for name, values in (("mu", mu), ("logvar", logvar)):
                for d, column in enumerate(values.float().cpu().T):
                    writer.add_histogram(f"latent/{name}/z{d}", column, logged_step(trainer))


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
