"""Fréchet distance in the dataset classifier's feature space; real-image statistics cached per classifier."""

import hashlib
import os
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from vae_lab.metrics.classifier import device_of

REAL_STATES = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")  # torchmetrics' own


class Features(nn.Module):
    """The classifier's penultimate layer as a torchmetrics feature extractor (with `num_features`)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = int(classifier.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×num_features float features of images in [0, 1]."""
        return self.classifier.features(x).float()


def fid_metric(classifier: nn.Module) -> FrechetInceptionDistance:
    """torchmetrics' FID over the classifier's features, on its device."""
    # every image is already in this process (rank 0 alone evaluates under DDP): no cross-process sync
    metric = FrechetInceptionDistance(feature=Features(classifier), normalize=True, sync_on_compute=False)
    return metric.to(device_of(classifier))


def _update(metric: FrechetInceptionDistance, images: torch.Tensor, real: bool, batch_size: int) -> None:
    device = device_of(metric.inception.classifier)
    for batch in images.split(batch_size):
        metric.update(batch.to(device).float(), real=real)


def cache_key(real: torch.Tensor, classifier: nn.Module) -> str:
    """A digest of the real images and the classifier's weights."""
    digest = hashlib.blake2b(digest_size=10)
    images = real.detach().float().cpu().contiguous()
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images.numpy().tobytes())
    for name, tensor in sorted(classifier.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def real_statistics(real: torch.Tensor, classifier: nn.Module, batch_size: int = 1000,
                    cache: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The real images' torchmetrics FID states, from `cache/real-<key>.pt` or computed and saved there."""
    path = Path(cache) / f"real-{cache_key(real, classifier)}.pt" if cache is not None else None
    if path is not None and path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError):
            pass  # unreadable: computed again and rewritten
    metric = fid_metric(classifier)
    _update(metric, real, True, batch_size)
    stats = {name: getattr(metric, name).detach().cpu() for name in REAL_STATES}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # jobs side by side may write it at once
        torch.save(stats, tmp)
        tmp.replace(path)
    return stats


@torch.no_grad()
def fid_against(stats: dict[str, torch.Tensor], fake: torch.Tensor, classifier: nn.Module,
                batch_size: int = 1000) -> float:
    """FID between images with the given real statistics (`real_statistics`) and generated images."""
    metric = fid_metric(classifier)
    for name in REAL_STATES:
        setattr(metric, name, stats[name].to(getattr(metric, name).device))
    _update(metric, fake, False, batch_size)
    return float(metric.compute())


@torch.no_grad()
def fid(real: torch.Tensor, fake: torch.Tensor, classifier: nn.Module, batch_size: int = 1000) -> float:
    """FID between two image sets (N×C×H×W floats in [0, 1]) using the classifier's features."""
    return fid_against(real_statistics(real, classifier, batch_size), fake, classifier, batch_size)
