"""Matplotlib figures of a report's per-group results (mean ± std over seeds), written as PNG files.

Each figure function takes summary rows, plain dicts holding the group keys (model, net, dataset, beta,
capacity_max, latent_dim), `n`, and `mean` / `std` dicts keyed by metric name; it writes the PNG and
returns True, or returns False (writing nothing) when the rows hold nothing to plot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from vae_lab.metrics.disentanglement import PROPERTY

Row = dict[str, Any]

LABELS = {
    "test/loss": "test loss (the model's objective, nats)", "test/nelbo": "test −ELBO (nats)",
    "test/recon": "reconstruction (nats)", "test/kl": "KL (nats)",
    "test/active_units": "active units", "test/probe_accuracy": "linear-probe accuracy", "test/fid": "FID",
    "test/cond_accuracy": "conditional accuracy", "time/train_seconds": "training time (s)",
}
TRADEOFF = ("test/recon", "test/kl", "test/active_units", "test/probe_accuracy", "test/fid")
DISENTANGLEMENT = ("test/mig", "test/dci_disentanglement", "test/dci_completeness", "test/dci_informativeness",
                   "test/sap", "test/modularity", "test/explicitness", "test/factor_vae_score", "test/beta_vae_score")
LABELS.update({m: f"{m[5:]} ({PROPERTY[m[5:]]})" for m in DISENTANGLEMENT})
LABELS["test/udr"] = "UDR (no ground truth)"


def _has(row: Row, metric: str) -> bool:
    return row["mean"].get(metric) is not None


def _colours(rows: Sequence[Row]) -> dict[str, Any]:
    """One colour per dataset."""
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(sorted({r["dataset"] for r in rows}))}


def group_label(row: Row, rows: Sequence[Row]) -> str:
    """A short name for a group: the model, plus whichever settings tell it apart from the others."""
    parts = [row["model"]]
    if len({r["net"] for r in rows}) > 1:
        parts.append(row["net"])
    if row["model"] == "beta_vae" or (row["beta"] is not None and row["beta"] != 1):
        parts.append(f"β={row['beta']:g}")
    if row["capacity_max"]:
        parts.append(f"C={row['capacity_max']:g}")
    if len({r["latent_dim"] for r in rows}) > 1:
        parts.append(f"z={row['latent_dim']}")
    return " ".join(parts)


def elbo_or_loss(rows: Sequence[Row]) -> str:
    """The −ELBO (comparable across objectives) where the runs recorded it, else their loss."""
    return "test/nelbo" if any(_has(r, "test/nelbo") for r in rows) else "test/loss"


def _errorbar(ax: plt.Axes, x: list[float], y: list[float], xerr: list[float] | None, yerr: list[float],
              **kwargs: Any) -> None:
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, capsize=3, **kwargs)


def _save(fig: plt.Figure, path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


ACCURACY = "accuracy: conditional (CVAE) or probe"  # one panel: the CVAEs' conditional, the others' probe accuracy
EPOCH_TIME = (("timing/epoch_seconds", "training s per epoch (timing pass)"),
              ("time/epoch_seconds", "training s per epoch (sweep wall clock)"))


def _quality(row: Row, metric: str) -> tuple[float | None, float | None, str]:
    """A row's value and seed spread of one quality axis; for `accuracy`, the CVAEs' conditional accuracy and
    the others' linear-probe accuracy, with a marker telling them apart."""
    if metric == "accuracy":
        metric = "test/cond_accuracy" if _has(row, "test/cond_accuracy") else "test/probe_accuracy"
    marker = "s" if metric == "test/cond_accuracy" else "o"
    return row["mean"].get(metric), row["std"].get(metric), marker


def quality_vs_time(rows: Sequence[Row], path: Path) -> bool:
    """Quality (−ELBO, FID, conditional or probe accuracy) against training seconds per epoch, one point per group
    with its seed spread (and the timing pass's min–max, when it ran), a row of panels per dataset."""
    x_key, x_label = next(((k, label) for k, label in EPOCH_TIME if any(_has(r, k) for r in rows)), (None, None))
    rows = [r for r in rows if x_key and _has(r, x_key)]
    if not rows:
        return False
    datasets = sorted({r["dataset"] for r in rows})
    quality = elbo_or_loss(rows)
    panels = ((quality, LABELS[quality]), ("test/fid", LABELS["test/fid"]), ("accuracy", ACCURACY))
    fig, axes = plt.subplots(len(datasets), len(panels), figsize=(5.5 * len(panels), 4.2 * len(datasets)),
                             squeeze=False)
    for axes_row, dataset in zip(axes, datasets):
        group = [r for r in rows if r["dataset"] == dataset]
        for ax, (metric, label) in zip(axes_row, panels):
            for row in group:
                y, yerr, marker = _quality(row, metric)
                if y is None:
                    continue
                x = row["mean"][x_key]
                span = row["runs"][0].record.get(f"{x_key}_range") if row.get("runs") else None
                xerr = [[x - span[0]], [span[1] - x]] if span else [row["std"].get(x_key) or 0.0]
                ax.errorbar([x], [y], xerr=xerr, yerr=[yerr or 0.0], fmt=marker, capsize=3)
                ax.annotate(group_label(row, rows), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            ax.set_xlabel(x_label)
            ax.set_ylabel(label)
            ax.set_title(dataset, fontsize=9)
            ax.grid(alpha=0.3)
    fig.suptitle("Quality against training time per epoch (mean ± std over seeds; ■ conditional accuracy, "
                 "● probe accuracy)")
    return _save(fig, path)


SUMMARY_FIELDS = ("n", "seeds", "runs", "mean", "std", "count", "left_out")  # a report row's statistics; its other fields say what it is
KEY_LABELS = {"model": "{}", "net": "{}", "beta": "β={:g}", "capacity_max": "C={:g}", "latent_dim": "z={}",
              "prior_components": "K={}", "learned_prior": "learned prior {}", "lr": "lr={:g}", "image_size": "{}²",
              "epochs": "{} epochs", "train_subset": "{} images"}


def _series(rows: Sequence[Row], x_key: str) -> dict[tuple, list[Row]]:
    """Rows split into lines that agree in everything but x_key, each sorted by x_key; only lines of 2+ distinct x
    (a line never joins groups that differ in another setting, such as the prior or the learning rate)."""
    lines: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        lines[tuple((k, row[k]) for k in sorted(row) if k not in SUMMARY_FIELDS and k != x_key)].append(row)
    return {key: sorted(line, key=lambda r: r[x_key]) for key, line in sorted(lines.items(), key=lambda kv: str(kv[0]))
            if len({r[x_key] for r in line}) > 1}


def _line_namer(lines: dict[tuple, list[Row]]):
    """Names for the lines: the dataset, then whatever else tells the lines apart."""
    keys = sorted({k for key in lines for k, _ in key})
    varying = [k for k in keys if k != "dataset" and len({dict(key).get(k) for key in lines}) > 1]

    def label(key: str, value: Any) -> str:
        try:
            return KEY_LABELS.get(key, key + "={}").format(value)
        except (TypeError, ValueError):  # a value older runs did not record (None)
            return f"{key}={value}"

    def name(row: Row) -> str:
        return " ".join([row["dataset"]] + [label(k, row[k]) for k in varying])

    return name


def _line_panels(lines: dict[tuple, list[Row]], x_key: str, metrics: Sequence[str], path: Path, title: str,
                 xlabel: str, log_base: float, line_name) -> bool:
    metrics = [m for m in metrics if any(_has(r, m) for line in lines.values() for r in line)]
    if not lines or not metrics:
        return False
    colours = _colours([r for line in lines.values() for r in line])
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        per_dataset: dict[str, int] = defaultdict(int)
        for line in lines.values():
            line = [r for r in line if _has(r, metric)]
            if not line:
                continue
            dataset = line[0]["dataset"]
            style = styles[per_dataset[dataset] % len(styles)]
            per_dataset[dataset] += 1
            _errorbar(ax, [r[x_key] for r in line], [r["mean"][metric] for r in line], None,
                      [r["std"][metric] for r in line], fmt="o" + style, color=colours[dataset],
                      label=line_name(line[0]))
        ax.set_xscale("log", base=log_base)
        ticks = sorted({r[x_key] for line in lines.values() for r in line})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def beta_tradeoff(rows: Sequence[Row], path: Path) -> bool:
    """β-VAE (no capacity annealing) per dataset: β against recon, KL, active units, probe accuracy, FID."""
    rows = [r for r in rows if r["model"] == "beta_vae" and not r["capacity_max"] and r["beta"]]
    lines = _series(rows, "beta")
    return _line_panels(lines, "beta", TRADEOFF, path, "β-VAE trade-off (mean ± std over seeds)", "β", 10,
                        _line_namer(lines))


def disentanglement_vs_beta(rows: Sequence[Row], path: Path) -> bool:
    """β-VAE on data with known factors: β against each disentanglement metric (labelled with its property)."""
    rows = [r for r in rows if r["model"] == "beta_vae" and not r["capacity_max"] and r["beta"]
            and _has(r, "test/mig")]
    lines = _series(rows, "beta")
    return _line_panels(lines, "beta", DISENTANGLEMENT, path, "Disentanglement against β (mean ± std over seeds)",
                        "β", 2, _line_namer(lines))


def objective_label(row: Row) -> str:
    """A study group's name: the model, its variant, and the hyper-parameters its objective sets."""
    parts = [str(row["model"])] + ([str(row["variant"]).upper()] if row.get("variant") else [])
    if row["model"] in ("beta_vae", "beta_tcvae") and not row.get("capacity_max"):
        parts.append(f"β={row['beta']:g}")
    for key, symbol in (("capacity_max", "C"), ("gamma", "γ"), ("lambda_od", "λ_od")):
        if row.get(key):
            parts.append(f"{symbol}={row[key]:g}")
    return " ".join(parts)


def disentanglement_by_objective(rows: Sequence[Row], path: Path) -> bool:
    """Several objectives on data with known factors (the unsupervised study): each metric, a bar per group
    (mean ± std over seeds), UDR too where the report has it."""
    rows = sorted((r for r in rows if _has(r, "test/mig")), key=lambda r: (r["dataset"], objective_label(r)))
    metrics = [m for m in (*DISENTANGLEMENT, "test/udr") if any(_has(r, m) for r in rows)]
    if len({r["model"] for r in rows}) < 2 or not metrics:
        return False
    colours = _colours(rows)
    several = len({r["dataset"] for r in rows}) > 1
    names = [objective_label(r) + (f" · {r['dataset']}" if several else "") for r in rows]
    columns, panel_rows = 3, -(-len(metrics) // 3)
    fig, axes = plt.subplots(panel_rows, columns, figsize=(5.2 * columns, (0.3 * len(rows) + 1.2) * panel_rows),
                             squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        means = [r["mean"].get(metric) for r in rows]
        ax.barh(range(len(rows)), [np.nan if m is None else m for m in means],
                xerr=[r["std"].get(metric) or 0.0 for r in rows], color=[colours[r["dataset"]] for r in rows],
                capsize=2)
        ax.set_yticks(range(len(rows)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(LABELS.get(metric, metric))
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.flat[len(metrics):]:
        ax.axis("off")
    fig.suptitle("Disentanglement per objective (mean ± std over seeds)")
    return _save(fig, path)


def latent_size(rows: Sequence[Row], path: Path) -> bool:
    """CVAE per dataset: latent size against test −ELBO and conditional accuracy (when groups differ in it)."""
    rows = [r for r in rows if r["model"] == "cvae" and r["latent_dim"]]
    lines = _series(rows, "latent_dim")
    return _line_panels(lines, "latent_dim", (elbo_or_loss(rows), "test/cond_accuracy"), path,
                        "CVAE latent size (mean ± std over seeds)", "latent dimensions", 2, _line_namer(lines))


def image_panels(panels: Sequence[tuple[str, np.ndarray, Sequence[str]]], path: Path, title: str = "") -> bool:
    """Image grids (H×W×3 arrays in [0, 1]) side by side, each with a title and a name beside each row."""
    if not panels:
        return False
    scale = 1 / 60
    width = sum(img.shape[1] * scale + 1.2 for _, img, _ in panels)
    height = max(img.shape[0] for _, img, _ in panels) * scale + 0.8
    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), squeeze=False,
                             gridspec_kw={"width_ratios": [img.shape[1] for _, img, _ in panels]})
    for ax, (name, img, row_labels) in zip(axes[0], panels):
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        rows = max(len(row_labels), 1)
        ax.set_yticks([(i + 0.5) * img.shape[0] / rows for i in range(len(row_labels))], list(row_labels),
                      fontsize=7)
        ax.set_xticks([])
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
