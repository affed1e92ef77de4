"""Image grids (torchvision's make_grid) of reconstructions, samples, traversals and class rows."""

import math
import textwrap
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

CARD_PX = 360   # about the width at which TensorBoard's Images cards show a picture: figures are drawn about this wide
FONT = 11       # points at 100 dpi (≈ 15 px): legible once a card has scaled the figure to its width
CHAR_PX = 8.2   # an average character's width at FONT, for margins and title wrapping
STILL = 0.01    # a traversal row whose images differ by less than this (mean pixel std) shows no change


def grid_columns(n: int) -> int:
    """Columns for a grid of n images: the divisor of n nearest above √n, or ⌈√n⌉ where that makes a long strip."""
    side = math.ceil(math.sqrt(n))
    return next((c for c in range(side, 2 * side + 1) if n % c == 0), side)


def reconstruction_columns(pairs: int) -> int:
    """Pairs per row of a reconstruction picture: all of up to ten in one row, else eight."""
    return pairs if pairs <= 10 else 8


@torch.no_grad()
def reconstruction_images(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None,
                          per_row: int) -> tuple[torch.Tensor, list[str]]:
    """Inputs and their reconstructions in alternating rows of `per_row`, and the rows' labels."""
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

    @property
    def span(self) -> float:
        """How far each row moves its latent either side of the image's μ."""
        return (self.ranges[0][1] - self.ranges[0][0]) / 2

    def still(self) -> bool:
        """Whether no row changes its image visibly (mean over pixels of the std along the row below STILL)."""
        rows = self.images.float().reshape(len(self.dims), self.steps, -1)
        return bool((rows.std(1).mean(1) < STILL).all())

    def title(self) -> str:
        """What the picture shows; for a collapsed or near-collapsed model, that warning instead."""
        if self.active_units == 0:
            return "collapsed: no active units (no latent's mean varies over the images: none encodes them)"
        if self.still():
            return "near-collapsed: moving any latent barely changes the image (every row alike)"
        return f"traversals (±{self.span:g} around the image's μ), most KL first"


@torch.no_grad()
def traversal(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None, steps: int = 9, span: float = 3.0,
              rows: int | None = None, collapsed_rows: int | None = 1) -> Traversal:
    """The first image's traversal, a row per latent ordered by the model's KL over x; `rows` of them."""
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
    """Images of code z with each of `dims` moved by each of `offsets`, a row per dim, decoded as one batch."""
    codes = z.to(model.device).repeat(len(dims) * len(offsets), 1).view(len(dims), len(offsets), -1)
    for row, dim in enumerate(dims):
        codes[row, :, dim] += offsets.to(model.device)
    labels = None if y is None else y[:1].to(model.device).repeat(len(dims) * len(offsets))
    return mean_image(model.decode(codes.view(-1, model.latent_dim), labels))


def traversal_figure(t: Traversal, title: str = "", image: torch.Tensor | None = None) -> plt.Figure:
    """The traversal grid with its row labels and title (or a collapse warning), the input image first."""
    images, columns = t.images.clamp(0, 1).cpu(), t.steps
    labels = [""] * t.steps
    labels[0], labels[t.steps // 2], labels[-1] = f"−{t.span:g}", "μ", f"+{t.span:g}"
    if image is not None:
        blank = torch.full((len(t.dims), 1, *images.shape[1:]), 0.5)
        blank[0, 0] = image.float().cpu().clamp(0, 1)
        images = torch.cat([blank, images.view(len(t.dims), t.steps, *images.shape[1:])], 1).flatten(0, 1)
        columns, labels = columns + 1, ["input", *labels]
    grid = make_grid(images, nrow=columns, pad_value=0.5)
    return labelled_rows(grid, t.labels(), "\n".join(filter(None, [title, t.title()])), labels)


@torch.no_grad()
def class_images(model: BaseVAE, per_class: int = 8, temperature: float = 1.0) -> torch.Tensor:
    """per_class samples for each class, class-major (row k holds class k)."""
    labels = torch.arange(model.num_classes, device=model.device).repeat_interleave(per_class)
    return model.generate(labels=labels, temperature=temperature)


def class_grid(model: BaseVAE, per_class: int = 8, temperature: float = 1.0) -> torch.Tensor:
    """A conditional model's samples, one row per class."""
    return make_grid(class_images(model, per_class, temperature), nrow=per_class, pad_value=0.5)


def labelled_rows(grid: torch.Tensor, row_labels: Sequence[str], title: str = "",
                  column_labels: Sequence[str] = ()) -> plt.Figure:
    """A grid image as a figure with a name beside each row (and column), legible in a TensorBoard card."""
    height, width = grid.shape[1:]
    margin = 12 + CHAR_PX * max((len(label) for label in row_labels), default=0)  # pixels for the row labels
    scale = min(4.0, max(1.0, (CARD_PX - margin - 10) / width))  # the grid's pixels, enlarged to fill the card
    image_w, image_h = width * scale, height * scale
    fig_w = max(margin + image_w + 10, CARD_PX)  # at least a card wide: room for the title
    lines = [w for line in title.split("\n") if line for w in textwrap.wrap(line, int(fig_w / CHAR_PX) - 2)]
    top, bottom = 8 + 1.45 * FONT * len(lines) * 100 / 72, 8 + (22 if column_labels else 0)
    fig_h = image_h + top + bottom
    fig, ax = plt.subplots(figsize=(fig_w / 100, fig_h / 100), dpi=100)
    fig.subplots_adjust(left=margin / fig_w, right=(margin + image_w) / fig_w, bottom=bottom / fig_h,
                        top=(fig_h - top) / fig_h)
    ax.imshow(grid.permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
    rows = len(row_labels)
    ax.set_yticks([(i + 0.5) * height / rows for i in range(rows)], list(row_labels), fontsize=FONT)
    columns = len(column_labels)
    ax.set_xticks([(i + 0.5) * width / columns for i in range(columns)], list(column_labels), fontsize=FONT - 1)
    ax.tick_params(length=0)
    ax.set_title("\n".join(lines), fontsize=FONT, x=(fig_w / 2 - margin) / image_w)  # centred on the figure
    return fig


def curves_figure(history: dict[int, dict[str, float]], terms: Sequence[tuple[str, str]]) -> plt.Figure:
    """Train (epoch means) against validation, a panel per term, every logged point, two colours, a legend."""
    epochs = sorted(history)
    fig, axes = plt.subplots(len(terms), 1, figsize=(CARD_PX / 100, 2.1 * len(terms)), dpi=100, squeeze=False)
    for ax, (name, term) in zip(axes[:, 0], terms):
        for stage, colour, label in (("train_epoch", "tab:blue", "train"), ("val", "tab:orange", "validation")):
            points = [(e, history[e][f"{stage}/{term}"]) for e in epochs if f"{stage}/{term}" in history[e]]
            if points:
                ax.plot(*zip(*points), marker="o", color=colour, label=label)
        ax.set_title(name, fontsize=FONT - 1)
        ax.tick_params(labelsize=FONT - 2)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[-1][0].set_xlabel("epoch", fontsize=FONT - 1)
    axes[0][0].legend(fontsize=FONT - 2)
    fig.tight_layout()
    return fig


def kl_bars(kl: torch.Tensor, active: torch.Tensor | None = None, title: str = "") -> plt.Figure:
    """Each latent's KL against the model's prior as one bar, largest first, named z<d>; inactive ones grey."""
    kl = kl.detach().float().cpu()
    order = kl.argsort(descending=True).tolist()
    colours = ["tab:blue" if active is None or bool(active[d]) else "0.7" for d in order]
    fig, ax = plt.subplots(figsize=(CARD_PX / 100, 3.0), dpi=100)
    bars = ax.bar(range(len(order)), [float(kl[d]) for d in order], color=colours)
    ax.bar_label(bars, fmt="%.2f", fontsize=FONT - 3)
    ax.set_xticks(range(len(order)), [f"z{d}" for d in order], fontsize=FONT - 2 if len(order) <= 10 else 6)
    ax.set_ylabel("KL (nats)", fontsize=FONT - 1)
    ax.margins(y=0.15)
    summary = f"KL per latent, largest first ({kl.sum():.1f} nats in all)"
    if active is not None:
        summary += f"; grey: unused ({int((~active.bool()).sum())} of {len(kl)})"
    lines = [line for part in filter(None, [title, summary]) for line in textwrap.wrap(part, 44)]
    ax.set_title("\n".join(lines), fontsize=FONT - 1)
    fig.tight_layout()
    return fig
