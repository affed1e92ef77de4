"""The importance-weighted bound on −log p(x) (Burda et al., 2016), chunked over importance samples."""

import copy
import math
from collections.abc import Iterable

import torch
from torch import nn
from tqdm import tqdm

from vae_lab.errors import ConfigError
from vae_lab.models.base import BaseVAE
from vae_lab.models.likelihood import nll
from vae_lab.models.reparam import gaussian_log_density

Batch = tuple[torch.Tensor, torch.Tensor | None]
CPU_DECODES = 1024  # most decodes per pass on the CPU: larger passes spill its caches and run slower (Speed)
CPU_PASS_FLOATS = 2**21  # most floats in one decoder layer's output per CPU pass (8 MB): glibc maps a buffer over
# 32 MB afresh at every allocation, and the page faults took a third of the Burgess net's IWAE time (Speed)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}  # eval.iwae_precision: the decodes' arithmetic


def decode_trace(model: BaseVAE) -> list[tuple[nn.Module, torch.Tensor]]:
    """Each module of the net that ran in a one-sample decode, with its output, in the order they finished."""
    trace: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [layer.register_forward_hook(lambda module, args, out: trace.append((module, out)))
             for layer in model.net.modules()]
    label = torch.zeros(1, dtype=torch.long, device=model.device) if model.conditional else None
    try:
        model.decode(torch.zeros(1, model.latent_dim, device=model.device, dtype=model.dtype), label)
    finally:
        for hook in hooks:
            hook.remove()
    return trace


def widest_layer(model: BaseVAE) -> int:
    """Floats per sample in the widest output of any layer of one decode: what a decode pass holds per sample."""
    return max(out[0].numel() for _, out in decode_trace(model))


def output_layer(model: BaseVAE) -> nn.Module:
    """The decoder's last layer with parameters: the one whose outputs are the logits."""
    return [module for module, _ in decode_trace(model) if next(module.parameters(recurse=False), None) is not None][-1]


def check_precision(precision: str) -> None:
    """Reject an unknown `eval.iwae_precision` in one line."""
    if precision not in PRECISIONS:
        raise ConfigError(f"eval.iwae_precision={precision!r}: choose one of {sorted(PRECISIONS)}")


def decoder_in(model: BaseVAE, precision: str) -> BaseVAE:
    """The model the bound decodes with: itself (fp32), or a bf16 copy whose output layer adds its bias in fp32."""
    check_precision(precision)
    if precision == "fp32":
        return model
    if model.hparams.likelihood != "bernoulli":
        raise ConfigError(f"eval.iwae_precision={precision} is for Bernoulli decoders: a {model.hparams.likelihood} "
                          "likelihood scales the logits' rounding by 1/σ², so its bound moves by far more; use fp32")
    decoder = copy.deepcopy(model)
    output = output_layer(decoder)
    bias = output.bias.detach().clone() if output.bias is not None else None
    decoder.to(PRECISIONS[precision])
    if bias is not None:
        output.bias = None
        output.register_forward_hook(lambda module, args, out: out.float() + bias.view(-1, *[1] * (out.dim() - 2)))
    return decoder


def log_weights(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None, mu: torch.Tensor, logvar: torch.Tensor,
                k: int, decoder: BaseVAE | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x|z) + log p(z) − log q(z|x) for k fresh samples z ~ q(z|x): k×N, in fp32."""
    n, decoder = len(x), decoder or model
    z = mu + torch.randn(k, *mu.shape, device=mu.device, generator=generator) * torch.exp(0.5 * logvar)
    logits = decoder.decode(z.flatten(0, 1).to(decoder.dtype), None if y is None else y.repeat(k)).float()
    log_px = -nll(logits, x.repeat(k, *[1] * (x.dim() - 1)), model.hparams.likelihood, model.hparams.obs_sigma)
    return log_px.view(k, n) + model.log_prior(z, y) - gaussian_log_density(z, mu, logvar).sum(-1)


@torch.no_grad()
def iwae_bound(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None = None, samples: int = 100,
               chunk: int = 100, decoder: BaseVAE | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """−log p(x) upper bound per image: −log (1/K) Σ_k w_k over `samples` draws, `chunk` at a time."""
    x = x.to(model.device).float()
    y = None if y is None or not model.conditional else y.to(model.device)
    if x.device.type == "cpu":
        decodes = min(CPU_DECODES, CPU_PASS_FLOATS // widest_layer(model))
        chunk = max(1, min(chunk, decodes // len(x)))
    mu, logvar = model.encode(x, y)
    total = torch.full((len(x),), -math.inf, device=x.device)
    for start in range(0, samples, chunk):
        block = log_weights(model, x, y, mu, logvar, min(chunk, samples - start), decoder, generator).float()
        total = torch.logaddexp(total, torch.logsumexp(block, dim=0))
    return math.log(samples) - total


def iwae_nll(model: BaseVAE, batches: Iterable[Batch], samples: int = 100, chunk: int = 100,
             precision: str = "fp32", seed: int | None = None) -> float:
    """Mean IWAE bound on −log p(x) in nats per image (`test/nll_iwae`), decoded in `precision`, drawn from `seed`."""
    decoder = decoder_in(model, precision)
    generator = None if seed is None else torch.Generator(model.device).manual_seed(seed)
    total, count = 0.0, 0
    for x, y in tqdm(batches, desc=f"IWAE bound ({samples} samples, {precision})", unit="batch", mininterval=5,
                     leave=False, disable=None):  # disable=None: a bar on a terminal, none in a log file
        total += iwae_bound(model, x, y, samples, chunk, decoder, generator).sum().item()
        count += len(x)
    return total / max(count, 1)
