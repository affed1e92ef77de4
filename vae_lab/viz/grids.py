"""Image grids (torchvision's make_grid) of reconstructions, samples, traversals and class rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid

from vae_lab.metrics.latent import active_units
from vae_lab.models.base import BaseVAE
from vae_lab.models.likelihood import mean_image


def grid_columns(n: int) -> int:
    """Columns for a grid of n images that fills it: the divisor of n nearest above √n (16 → 4×4, 10 → 5×2, 6 → 3×2),
    or ⌈√n⌉ (a few blanks in the last row) when that divisor would make a strip more than twice as wide as square."""
    side = math.ceil(math.sqrt(n))
    return next((c for c in range(side, 2 * side + 1) if n % c == 0), side)


def reconstruction_columns(pairs: int) -> int:
    """Pairs per row of a reconstruction picture: all of up to ten in one row, else eight."""
    return pairs if pairs <= 10 else 8


@torch.no_grad()
def reconstruction_images(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None,
                          per_row: int) -> tuple[torch.Tensor, list[str]]:
    """Inputs and their reconstructions in alternating rows of `per_row` (input row, output row, …), and the rows'
    labels."""
    x = x.to(model.device)
    y = None if y is None else y.to(model.device)
    out = model.reconstruct(x, y)
    rows, labels = [], []
    for start in range(0, len(x), per_row):
        for images, label in ((x[start:start + per_row], "input"), (out[start:start + per_row], "output")):
            pad = per_row - len(images)
            rows.append(torch.cat([images, torch.full((pad, *images.shape[1:]), 0.5, device=images.device)]))
            labels.append(label)
    return torch.cat(rows), labels


def reconstructions(model: BaseVAE, x: torch.Tensor, y: torch.Tensor, pairs: int = 16, per_row: int = 8) -> plt.Figure:
    """`pairs` inputs and reconstructions, each row labelled input or output."""
    images, labels = reconstruction_images(model, x[:pairs], y[:pairs], per_row)
    grid = make_grid(images.clamp(0, 1).cpu(), nrow=per_row, pad_value=0.5)
    return labelled_rows(grid, labels, f"reconstructions: {min(pairs, len(x))} validation images")


@torch.no_grad()
def samples(model: BaseVAE, n: int = 64, temperature: float = 1.0) -> torch.Tensor:
    """n prior samples (conditional models cycle through the classes)."""
    return make_grid(model.generate(n, temperature=temperature), nrow=grid_columns(n), pad_value=0.5)


@dataclass
class Traversal:
    """Latent traversals of one image: a row per latent, most KL first."""

    images: torch.Tensor                  # rows × steps decoded images, row-major
    steps: int
    dims: list[int]                       # the latent each row moves
    kl: list[float]                       # that latent's KL (nats, the model's per-dimension KL, batch mean)
    ranges: list[tuple[float, float]]     # the values the latent takes along its row
    active_units: int                     # latents whose posterior mean varies over the batch (Burda et al.)

    def labels(self) -> list[str]:
        """One label per row: latent index, its KL and its z range."""
        return [f"z{d}  KL {kl:.2f}  z∈[{lo:.1f}, {hi:.1f}]" for d, kl, (lo, hi) in zip(self.dims, self.kl, self.ranges)]

    def title(self) -> str:
        """What the picture shows; for a collapsed model (no active unit), that every row would look the same."""
        if self.active_units == 0:
            return "collapsed: no active units (no latent's mean varies over the images: none encodes them)"
        return f"traversals (±{(self.ranges[0][1] - self.ranges[0][0]) / 2:g} around the image's μ), most KL first"


@torch.no_grad()
def traversal(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None, steps: int = 9, span: float = 3.0,
              rows: int | None = None, collapsed_rows: int | None = 1) -> Traversal:
    """Traverse the first image's latents, one row per latent ordered by the model's per-dimension KL over the
    whole batch x (`kl_per_dimension`, learned and mixture priors included); `rows` keeps the first that many, and
    `collapsed_rows` (None: all) as many for a collapsed model (no active unit over x)."""
    x = x.to(model.device)
    y = None if y is None else y.to(model.device)
    mu, logvar = model.encode(x, y)
    kl = model.kl_per_dimension(mu, logvar, y).mean(0)
    active = active_units(mu) if len(x) > 1 else model.latent_dim
    order = kl.argsort(descending=True).tolist()[: collapsed_rows if active == 0 else rows]
    images = traverse(model, mu[0], order, y, torch.linspace(-span, span, steps, device=model.device))
    ranges = [(float(mu[0, d]) - span, float(mu[0, d]) + span) for d in order]
    return Traversal(images, steps, order, [float(kl[d]) for d in order], ranges, active)


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


def traversal_figure(t: Traversal, title: str = "") -> plt.Figure:
    """The traversal grid with each row's label, titled with what it shows (or that the model collapsed)."""
    grid = make_grid(t.images.clamp(0, 1).cpu(), nrow=t.steps, pad_value=0.5)
    return labelled_rows(grid, t.labels(), "\n".join(filter(None, [title, t.title()])))


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
    lines = title.count("\n") + 1 if title else 0
    margin = 0.3 + 0.075 * max((len(label) for label in row_labels), default=0)  # inches for the row labels
    image_w, image_h = width / 40, height / 40
    title_w = 0.07 * max((len(line) for line in title.split("\n")), default=0)
    fig_w, fig_h = max(margin + image_w + 0.2, title_w + 0.3), image_h + 0.2 + 0.22 * lines
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=100)
    fig.subplots_adjust(left=margin / fig_w, right=(margin + image_w) / fig_w, bottom=0.1 / fig_h,
                        top=(0.1 + image_h) / fig_h)
    ax.imshow(grid.permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
    rows = len(row_labels)
    ax.set_yticks([(i + 0.5) * height / rows for i in range(rows)], list(row_labels))
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    return fig
