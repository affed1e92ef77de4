"""Training-time accounting: a Lightning callback that times training epochs, validation excluded."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch

from vae_lab.data.datamodule import step_batches


class TrainTimer(pl.Callback):
    """Wall time spent in training epochs only (validation excluded) and the images processed in it."""

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.images = 0
        self.epoch_seconds: list[float] = []
        self._start: float | None = None
        self._epoch = 0.0

    def _pause(self) -> None:
        if self._start is not None:
            synchronize()
            self._epoch += time.perf_counter() - self._start
            self._start = None

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._epoch, self._start = 0.0, time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        images = sum(len(x) for x, _ in step_batches(batch))
        self.images += images * trainer.world_size  # under DDP every process trains on as many

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._start is None:  # after a validation within the epoch (trainer.val_check_interval < 1)
            self._start = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._pause()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._pause()
        self.epoch_seconds.append(self._epoch)
        self.train_seconds += self._epoch

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints, so a resumed run reports the training time of all its epochs."""
        return {"train_seconds": self.train_seconds, "images": self.images, "epoch_seconds": self.epoch_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_seconds, self.images = state["train_seconds"], state["images"]
        self.epoch_seconds = list(state["epoch_seconds"])

    def summary(self) -> dict[str, float]:
        """The timing entries of metrics.json."""
        seconds = self.train_seconds
        return {"time/train_seconds": seconds,
                "time/epoch_seconds": seconds / max(1, len(self.epoch_seconds)),
                "time/train_images_per_second": self.images / seconds if seconds else 0.0}


def synchronize() -> None:
    """Wait for queued GPU work so wall-clock timings are honest."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
