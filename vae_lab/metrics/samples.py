"""Metrics of prior samples judged by the dataset classifier: conditional accuracy, class entropy, throughput."""

import time

import torch
from torch import nn

from vae_lab.metrics.classifier import device_of
from vae_lab.models.base import BaseVAE
from vae_lab.timing import synchronize


@torch.no_grad()
def generate_batched(model: BaseVAE, n: int, labels: torch.Tensor | None = None, temperature: float = 1.0,
                     batch_size: int = 1000) -> torch.Tensor:
    """n generated images in [0, 1] (labels cycling 0…9 for conditional models unless given), in batches."""
    if model.conditional and labels is None:
        labels = torch.arange(n, device=model.device) % model.num_classes
    parts = [model.generate(min(batch_size, n - start), None if labels is None else
                            labels[start:start + batch_size].to(model.device), temperature)
             for start in range(0, n, batch_size)]
    return torch.cat(parts)


def timed_generation(model: BaseVAE, n: int, batch_size: int = 1000) -> tuple[torch.Tensor, float]:
    """n generated images and the generation throughput in images per second."""
    generate_batched(model, min(n, batch_size), batch_size=batch_size)  # warm-up: kernels, autotuning
    synchronize()
    start = time.perf_counter()
    images = generate_batched(model, n, batch_size=batch_size)
    synchronize()
    return images, n / max(time.perf_counter() - start, 1e-9)


@torch.no_grad()
def predict(classifier: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The classifier's predicted class for each image, in batches (on the images' device)."""
    device = device_of(classifier)
    return torch.cat([classifier(batch.to(device)).argmax(1) for batch in images.split(batch_size)]).to(images.device)


def conditional_accuracy(model: BaseVAE, classifier: nn.Module, per_class: int = 1000,
                         temperature: float = 1.0, batch_size: int = 1000) -> float:
    """How often the classifier recognises the requested class in a CVAE's class-conditional prior samples."""
    labels = torch.arange(model.num_classes, device=model.device).repeat_interleave(per_class)
    images = generate_batched(model, len(labels), labels, temperature, batch_size)
    return (predict(classifier, images, batch_size) == labels).float().mean().item()


def entropy_of_predictions(predicted: torch.Tensor, num_classes: int) -> float:
    """Entropy in nats of the histogram of predicted classes (ln num_classes when uniform)."""
    p = torch.bincount(predicted.flatten().long(), minlength=num_classes).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


def class_entropy(model: BaseVAE, classifier: nn.Module, n: int = 10000, temperature: float = 1.0,
                  batch_size: int = 1000, images: torch.Tensor | None = None) -> float:
    """Entropy (nats) of the classifier's predicted classes over n prior samples, or over given `images`."""
    if images is None:
        images = generate_batched(model, n, temperature=temperature, batch_size=batch_size)
    return entropy_of_predictions(predict(classifier, images, batch_size), model.num_classes)
