"""Image grids (torchvision's make_grid) of reconstructions, samples, traversals and class rows."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid

from vae_lab.models.base import BaseVAE
from vae_lab.models.likelihood import mean_image


@torch.no_grad()
def reconstructions(model: BaseVAE, x: torch.Tensor, y: torch.Tensor, n: int = 8) -> torch.Tensor:
    """n inputs in the top row, their reconstructions below."""
    x, y = x[:n].to(model.device), y[:n].to(model.device)
    return make_grid(torch.cat([x, model.reconstruct(x, y)]), nrow=len(x), pad_value=0.5)


@torch.no_grad()
def samples(model: BaseVAE, n: int = 64, temperature: float = 1.0) -> torch.Tensor:
    """n prior samples (conditional models cycle through the classes)."""
    return make_grid(model.generate(n, temperature=temperature), nrow=int(n ** 0.5) or 1, pad_value=0.5)


@torch.no_grad()
def traversal_images(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None, steps: int = 9,
                     span: float = 3.0) -> tuple[torch.Tensor, list[int]]:
    """One row per latent (most KL to N(0, I) first, learned priors included, whose KL does not split by latent):
    the image's mu with that latent moved by −span…span."""
    x = x[:1].to(model.device)
    y = None if y is None else y[:1].to(model.device)
    mu, logvar = model.encode(x, y)
    order = model.kl_per_dim(mu, logvar)[0].argsort(descending=True).tolist()
    return traverse(model, mu[0], order, y, torch.linspace(-span, span, steps, device=model.device)), order


@torch.no_grad()
def traverse(model: BaseVAE, z: torch.Tensor, dims: Sequence[int], y: torch.Tensor | None,
             offsets: torch.Tensor) -> torch.Tensor:
    """Images of the code z (length D) with each of `dims` in turn moved by each of `offsets`, row-major (one row per
    dim), decoded as one batch."""
    codes = z.to(model.device).repeat(len(dims) * len(offsets), 1).view(len(dims), len(offsets), -1)
    for row, dim in enumerate(dims):
        codes[row, :, dim] += offsets.to(model.device)
    labels = None if y is None else y[:1].to(model.device).repeat(len(dims) * len(offsets))
    return mean_image(model.decode(codes.view(-1, model.latent_dim), labels))


def traversals(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None, steps: int = 9) -> torch.Tensor:
    """The traversal images as one grid, a row per latent dimension."""
    images, _ = traversal_images(model, x, y, steps)
    return make_grid(images, nrow=steps, pad_value=0.5)


@torch.no_grad()
def class_images(model: BaseVAE, per_class: int = 8, temperature: float = 1.0) -> torch.Tensor:
    """per_class samples for each class, class-major (row k holds class k)."""
    labels = torch.arange(model.num_classes, device=model.device).repeat_interleave(per_class)
    return model.generate(labels=labels, temperature=temperature)


def class_grid(model: BaseVAE, per_class: int = 8, temperature: float = 1.0) -> torch.Tensor:
    """A conditional model's samples, one row per class."""
    return make_grid(class_images(model, per_class, temperature), nrow=per_class, pad_value=0.5)


def labelled_rows(grid: torch.Tensor, row_labels: Sequence[str], title: str = "") -> plt.Figure:
    """A grid image as a matplotlib figure with a name beside each row (e.g. Fashion-MNIST classes)."""
    height, width = grid.shape[1:]
    fig, ax = plt.subplots(figsize=(2 + width / 40, height / 40 + 0.4), dpi=100)
    ax.imshow(grid.permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
    rows = len(row_labels)
    ax.set_yticks([(i + 0.5) * height / rows for i in range(rows)], list(row_labels))
    ax.set_xticks([])
    ax.set_title(title)
    fig.tight_layout()
    return fig
