"""β-VAE: Higgins et al.'s recon + β·KL, or Burgess et al.'s recon + γ·|KL − C| with C annealed."""

from typing import Any

import torch

from vae_lab.errors import check_number
from vae_lab.models.base import BaseVAE, Batch, Posterior


def capacity(step: int, capacity_max: float, capacity_steps: int) -> float:
    """Burgess et al.'s target KL: rises linearly from 0 to capacity_max over capacity_steps, then stays."""
    return capacity_max * min(1.0, step / max(1, capacity_steps))


class BetaVAE(BaseVAE):
    """β·KL by default; with capacity_max > 0 the capacity-annealed objective instead."""

    def __init__(self, net: Any, beta: float = 4.0, gamma: float = 1000.0, capacity_max: float = 0.0,
                 capacity_steps: int = 100_000, **kwargs: Any) -> None:
        check_number("model.capacity_max", capacity_max, minimum=0)
        check_number("model.gamma", gamma, minimum=0)
        check_number("model.capacity_steps", capacity_steps, whole=True, minimum=1)
        super().__init__(net, beta=beta, **kwargs)
        # C lives on the device and is set before each step, so that a captured CUDA graph reads its new value
        self.register_buffer("capacity_now", torch.zeros(()), persistent=False)
        self._checkpoint_step = 0

    def set_capacity(self, step: int | None = None) -> None:
        """C at `step` (default: the trainer's step, or the loaded checkpoint's if that is later)."""
        step = max(self.global_step, self._checkpoint_step) if step is None else step
        self.capacity_now.fill_(capacity(step, self.hparams.capacity_max, self.hparams.capacity_steps))

    def optimise(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.set_capacity()
        return super().optimise(batch)

    def on_validation_start(self) -> None:
        self.set_capacity()

    on_test_start = on_validation_start

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the step the checkpoint was saved at: the capacity C of a loaded model is the one it reached."""
        super().on_load_checkpoint(checkpoint)
        self._checkpoint_step = int(checkpoint.get("global_step", 0))
        self.set_capacity()

    def loss_is_nelbo(self) -> bool:
        return self.beta == 1 and self.hparams.capacity_max <= 0

    def objective(self, terms: dict[str, torch.Tensor], posterior: Posterior) -> dict[str, torch.Tensor]:
        if self.hparams.capacity_max <= 0:
            return super().objective(terms, posterior)
        c = self.capacity_now
        return {"loss": terms["recon"] + self.hparams.gamma * (terms["kl"] - c).abs(), "capacity": c.clone()}
