"""The training loss as CUDA graphs: its forward and backward captured once, then replayed every step.

A small VAE's step on a GPU is bound by launching its few hundred kernels one by one from Python, not by
arithmetic; a replayed graph launches them all at once. `torch.cuda.make_graphed_callables` keeps the graphs
inside autograd, so the optimiser, schedulers and Lightning's loop stay as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from vae_lab.models.base import BaseVAE, Batch


class LossTerms(nn.Module):
    """A VAE's `loss_terms` as a module of (images, labels) returning a tuple (what graph capture needs)."""

    def __init__(self, vae: BaseVAE) -> None:
        super().__init__()
        self.vae = vae
        self.names: list[str] = []

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        terms = self.vae.loss_terms((x, y))
        self.names = list(terms)
        return tuple(terms.values())


class LossGraph:
    """Loss terms from graphs captured at the first CUDA batch's shape; other shapes and the CPU run eagerly."""

    def __init__(self, vae: BaseVAE) -> None:
        self.vae = vae
        self.module: LossTerms | None = None
        self.shape: torch.Size | None = None

    def __call__(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, y = batch
        if not x.is_cuda:
            return self.vae.loss_terms(batch)
        if self.module is None:
            self.capture(x, y)
        if x.shape != self.shape:  # e.g. an epoch's last, smaller batch
            return self.vae.loss_terms(batch)
        return dict(zip(self.module.names, self.module(x, y)))

    def capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Warm up and capture under the ambient autocast dtype, with autocast's weight cache off (graphs need it)."""
        dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else torch.float32
        module = LossTerms(self.vae)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32, cache_enabled=False):
            self.module = torch.cuda.make_graphed_callables(module, (x.clone(), y.clone()), allow_unused_input=True)
        self.shape = x.shape
