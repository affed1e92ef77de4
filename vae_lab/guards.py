"""Stop a run whose loss stops being finite, before a bad checkpoint can replace the last good one."""

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn

from vae_lab.errors import VaeLabError


class NonFiniteLossError(VaeLabError):
    """The training loss became NaN or infinite."""


class FiniteLossGuard(pl.Callback):
    """Checks the running loss terms every `every_n_steps` steps (a host sync) and before each checkpoint."""

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps
        self._checked_at = 0  # a batch may advance global_step by several steps (data.steps_per_batch)

    def _check(self, trainer: pl.Trainer, module: pl.LightningModule, weights: bool = False) -> None:
        """Raise if the epoch's loss sums (and, before a checkpoint, the weights) are not finite on any process."""
        sums = getattr(module, "_train_sums", None)
        loss_bad = sums is not None and not bool(torch.isfinite(sums).all())
        # the last update can break the weights after a finite loss; one host sync, at checkpoints only
        weights_bad = weights and not bool(torch.stack([torch.isfinite(p).all() for p in module.parameters()]).all())
        bad = loss_bad or weights_bad
        if getattr(trainer, "world_size", 1) > 1:  # all processes stop together, or those left would wait forever
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        what, terms = "loss", "on another process"
        if loss_bad:
            means = (sums / module._train_count).tolist()
            terms = "epoch means: " + ", ".join(f"{n}={v:.4g}" for n, v in zip(module._train_names, means))
        elif weights_bad:
            what, terms = "weights", "after the last update; the losses were finite"
        raise NonFiniteLossError(f"non-finite training {what} at step {trainer.global_step} "
                                 f"(epoch {trainer.current_epoch}; {terms}); {kept(trainer)} — lower model.lr or "
                                 "check the data")

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.every_n_steps > 0 and abs(trainer.global_step - self._checked_at) >= self.every_n_steps:
            self._checked_at = trainer.global_step
            self._check(trainer, module)

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # a validation during fit may end in a checkpoint (trainer.training is already False here)
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._check(trainer, module, weights=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._check(trainer, module, weights=True)


def kept(trainer: pl.Trainer) -> str:
    """What the run leaves to go back to: its last checkpoint on disk (or the one it resumed from), if any."""
    callbacks = getattr(trainer, "checkpoint_callbacks", [])
    paths = [getattr(c, "last_model_path", "") or getattr(c, "best_model_path", "") for c in callbacks]
    paths = [p for p in [*paths, getattr(trainer, "ckpt_path", None) or ""] if p and Path(p).is_file()]
    return f"the last good checkpoint is kept ({paths[0]})" if paths else "no checkpoint was written before it"
