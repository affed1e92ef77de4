"""Test-set evaluation of a trained model: each metric lives in its own module, `evaluate_model` composes them."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
from torch import nn

from vae_lab.data.base import DataModule
from vae_lab.data.batches import ResidentImages
from vae_lab.metrics.fid import fid_against, real_statistics
from vae_lab.metrics.ground_truth import class_factor_metrics
from vae_lab.metrics.latent import active_units, linear_probe_accuracy
from vae_lab.metrics.likelihood import iwae_nll
from vae_lab.metrics.samples import class_entropy, conditional_accuracy, timed_generation
from vae_lab.models.base import BaseVAE
from vae_lab.timing import Stopwatch

Batch = tuple[torch.Tensor, torch.Tensor]


class SplitBatches:
    """(x, y) batches of a split's first `limit` images on `device`; sized, for a progress bar's total."""

    def __init__(self, split: ResidentImages, device: torch.device, batch_size: int = 500,
                 limit: int | None = None) -> None:
        self.split, self.device = split, device
        self.indices = torch.arange(min(len(split), limit or len(split))).split(batch_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[Batch]:
        for index in self.indices:
            x, y = self.split[index]
            yield x.to(self.device), y.to(self.device)


@torch.no_grad()
def posterior_means(model: BaseVAE, batches: Iterator[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
    """E_q[z|x] for every image of the batches, with the labels."""
    pairs = [(model.encode(x, y)[0], y) for x, y in batches]
    return torch.cat([mu for mu, _ in pairs]), torch.cat([y for _, y in pairs])


@torch.no_grad()
def reconstruction_mse(model: BaseVAE, batches: Iterator[Batch]) -> float:
    """Squared error summed over pixels between x and its deterministic reconstruction, averaged over images."""
    total, count = 0.0, 0
    for x, y in batches:
        total += (model.reconstruct(x, y) - x).pow(2).sum().item()
        count += len(x)
    return total / max(count, 1)


def sample_metrics(model: BaseVAE, classifier: nn.Module, real: torch.Tensor, n: int, per_class: int,
                   batch_size: int, watch: Stopwatch | None = None,
                   fid_cache: str | Path | None = None) -> dict[str, float]:
    """FID, class entropy and sampling throughput from n prior samples; conditional accuracies for a CVAE."""
    watch = watch or Stopwatch()
    with watch("fid_samples"):
        images, per_second = timed_generation(model, n, batch_size)
    with watch("fid_real"):
        stats = real_statistics(real, classifier, batch_size, fid_cache)
    with watch("fid_features"):
        out = {"test/fid": fid_against(stats, images, classifier, batch_size)}
    with watch("class_entropy"):
        out["test/class_entropy"] = class_entropy(model, classifier, images=images, batch_size=batch_size)
    out["time/sample_images_per_second"] = per_second
    if model.conditional:
        with watch("cond_accuracy"):
            out["test/cond_accuracy"] = conditional_accuracy(model, classifier, per_class, 1.0, batch_size)
            out["test/cond_accuracy_t0.5"] = conditional_accuracy(model, classifier, per_class, 0.5, batch_size)
    return out


@contextmanager
def evaluation_layout(model: nn.Module) -> Iterator[None]:
    """On the CPU, conv weights channels-last while evaluating (oneDNN's faster layout), then contiguous."""
    weights = [p for p in model.parameters() if p.dim() == 4 and p.device.type == "cpu"]
    convert = any(not p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    if convert:
        model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        if convert:
            model.to(memory_format=torch.contiguous_format)


@torch.no_grad()
def evaluate_model(model: BaseVAE, datamodule: DataModule, classifier: nn.Module | None, iwae_samples: int = 100,
                   iwae_chunk: int = 100, iwae_batch: int = 100, iwae_precision: str = "fp32", iwae_seed: int = 0,
                   max_test_images: int | None = None, probe_train_images: int = 10000, fid_samples: int = 10000,
                   per_class: int = 1000, batch_size: int = 500, watch: Stopwatch | None = None,
                   fid_cache: str | Path | None = None) -> dict[str, float]:
    """All `test/*` and `time/*` metrics of a model in eval mode; without a classifier, those that need none."""
    watch = watch or Stopwatch()
    with evaluation_layout(model):
        model.eval()
        datamodule.setup()
        test, train = datamodule.splits["test"], datamodule.splits["train"]
        batches = partial(SplitBatches, device=model.device, batch_size=batch_size, limit=max_test_images)
        with watch("eval_encode"):
            test_mu, test_y = posterior_means(model, batches(test))
        with watch("iwae"):
            nll_iwae = iwae_nll(model, batches(test, batch_size=iwae_batch), iwae_samples, iwae_chunk,
                                iwae_precision, iwae_seed)
        with watch("mse"):
            out = {"test/mse": reconstruction_mse(model, batches(test)), "test/nll_iwae": nll_iwae,
                   "test/active_units": float(active_units(test_mu))}
        if classifier is None:
            with watch("fid_samples"):
                _, per_second = timed_generation(model, min(fid_samples, 1000), batch_size)
            return {**out, "time/sample_images_per_second": per_second, **watch.summary()}
        with watch("eval_encode"):
            train_mu, train_y = posterior_means(model, batches(train, limit=probe_train_images))
            real = torch.cat([x for x, _ in batches(test)])
        num_classes = int(getattr(classifier, "config", {}).get("num_classes", model.num_classes))
        with watch("probe"):
            out["test/probe_accuracy"] = linear_probe_accuracy(train_mu, train_y, test_mu, test_y, num_classes)
        with watch("class_metrics"):
            out.update(class_factor_metrics(train_mu, train_y, test_mu, test_y))
        out.update(sample_metrics(model, classifier, real, fid_samples, per_class, batch_size, watch, fid_cache))
        return {**out, **watch.summary()}
