"""Fréchet distance between real and generated images in the dataset classifier's feature space."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from vae_lab.metrics.classifier import device_of


class Features(nn.Module):
    """The classifier's penultimate layer as a torchmetrics feature extractor (with `num_features`)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = int(classifier.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×num_features float features of images in [0, 1]."""
        return self.classifier.features(x).float()


@torch.no_grad()
def fid(real: torch.Tensor, fake: torch.Tensor, classifier: nn.Module, batch_size: int = 1000) -> float:
    """FID between two image sets (N×C×H×W floats in [0, 1]) using the classifier's features."""
    # every image is already in this process (rank 0 alone evaluates under DDP): no cross-process sync
    metric = FrechetInceptionDistance(feature=Features(classifier), normalize=True, sync_on_compute=False)
    metric = metric.to(device_of(classifier))
    for images, is_real in ((real, True), (fake, False)):
        for batch in images.split(batch_size):
            metric.update(batch.to(device_of(classifier)).float(), real=is_real)
    return float(metric.compute())
