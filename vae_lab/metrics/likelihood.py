"""The importance-weighted bound on −log p(x) (Burda et al., 2016), chunked over importance samples."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from tqdm import tqdm

from vae_lab.models.base import BaseVAE
from vae_lab.models.likelihood import nll
from vae_lab.models.reparam import gaussian_log_density

Batch = tuple[torch.Tensor, torch.Tensor | None]
CPU_DECODES = 1024  # most decodes per pass on the CPU: larger passes spill its caches and run slower (Speed)
CPU_PASS_FLOATS = 2**21  # most floats in one decoder layer's output per CPU pass (8 MB): glibc maps a buffer over
# 32 MB afresh at every allocation, and the page faults took a third of the Burgess net's IWAE time (Speed)


def widest_layer(model: BaseVAE, y: torch.Tensor | None) -> int:
    """Floats per sample in the widest output of any layer of one decode: what a decode pass holds per sample."""
    widths: list[int] = []
    hooks = [layer.register_forward_hook(lambda module, args, out: widths.append(out[0].numel()))
             for layer in model.net.modules()]
    try:
        model.decode(torch.zeros(1, model.latent_dim, device=model.device), None if y is None else y[:1])
    finally:
        for hook in hooks:
            hook.remove()
    return max(widths)


def log_weights(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None, mu: torch.Tensor, logvar: torch.Tensor,
                k: int) -> torch.Tensor:
    """log p(x|z) + log p(z) − log q(z|x) for k fresh samples z ~ q(z|x): shape k×N."""
    n = len(x)
    z = mu + torch.randn(k, *mu.shape, device=mu.device) * torch.exp(0.5 * logvar)
    logits = model.decode(z.flatten(0, 1), None if y is None else y.repeat(k))
    log_px = -nll(logits, x.repeat(k, *[1] * (x.dim() - 1)), model.hparams.likelihood, model.hparams.obs_sigma)
    return log_px.view(k, n) + model.log_prior(z, y) - gaussian_log_density(z, mu, logvar).sum(-1)


@torch.no_grad()
def iwae_bound(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None = None, samples: int = 100,
               chunk: int = 100) -> torch.Tensor:
    """−log p(x) upper bound per image (N,): −log (1/K) Σ_k w_k, K = `samples` drawn `chunk` at a time (on the
    CPU at most CPU_DECODES images × samples per pass, and no layer output over CPU_PASS_FLOATS)."""
    x = x.to(model.device).float()
    y = None if y is None or not model.conditional else y.to(model.device)
    if x.device.type == "cpu":
        decodes = min(CPU_DECODES, CPU_PASS_FLOATS // widest_layer(model, y))
        chunk = max(1, min(chunk, decodes // len(x)))
    mu, logvar = model.encode(x, y)
    total = torch.full((len(x),), -math.inf, device=x.device)
    for start in range(0, samples, chunk):
        block = log_weights(model, x, y, mu, logvar, min(chunk, samples - start)).float()
        total = torch.logaddexp(total, torch.logsumexp(block, dim=0))
    return math.log(samples) - total


def iwae_nll(model: BaseVAE, batches: Iterable[Batch], samples: int = 100, chunk: int = 100) -> float:
    """Mean IWAE bound on −log p(x) in nats per image over batches of (x, y): `test/nll_iwae`."""
    total, count = 0.0, 0
    for x, y in tqdm(batches, desc=f"IWAE bound ({samples} samples)", unit="batch", mininterval=5, leave=False):
        total += iwae_bound(model, x, y, samples, chunk).sum().item()
        count += len(x)
    return total / max(count, 1)
