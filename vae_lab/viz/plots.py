"""Matplotlib figures of a report's per-group results (mean ± std over seeds), axes picked from the groups' keys."""

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from vae_lab.metrics.disentanglement import PROPERTY
from vae_lab.results.names import key_header, setting_label

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
    parts = [row["model"]] + ([row["net"]] if len({r["net"] for r in rows}) > 1 else [])
    return " ".join(parts + [setting_label(k, v) for k, v in row["keys"].items() if v is not None])


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
    """A row's value and seed spread on one quality axis (accuracy: conditional for CVAEs, else the probe's)."""
    if metric == "accuracy":
        metric = "test/cond_accuracy" if _has(row, "test/cond_accuracy") else "test/probe_accuracy"
    marker = "s" if metric == "test/cond_accuracy" else "o"
    return row["mean"].get(metric), row["std"].get(metric), marker


def quality_vs_time(rows: Sequence[Row], path: Path) -> bool:
    """Quality against training seconds per epoch, a point per group with its spreads, a panel row per dataset."""
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


def _series(rows: Sequence[Row], x_key: str) -> dict[tuple, list[Row]]:
    """Rows split into lines that agree in everything but x_key, sorted by it; only lines of 2+ distinct x."""
    lines: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        if _is_number(row["keys"].get(x_key)):
            others = sorted((k, repr(v)) for k, v in row["keys"].items() if k != x_key)
            lines[(row["model"], row["net"], row["dataset"], *others)].append(row)
    return {key: sorted(line, key=lambda r: r["keys"][x_key]) for key, line in sorted(lines.items(), key=str)
            if len({r["keys"][x_key] for r in line}) > 1}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _line_namer(lines: dict[tuple, list[Row]], x_key: str):
    """Names for the lines: the dataset, then whatever else (model, net, another setting) tells the lines apart."""
    rows = [line[0] for line in lines.values()]
    keys = sorted({k for r in rows for k in r["keys"]} - {x_key})
    varying_ids = [k for k in ("model", "net") if len({r[k] for r in rows}) > 1]
    varying = [k for k in keys if len({repr(r["keys"].get(k)) for r in rows}) > 1]

    def name(row: Row) -> str:
        return " ".join([row["dataset"], *(row[k] for k in varying_ids),
                         *(setting_label(k, row["keys"].get(k)) for k in varying)])

    return name


def _line_panels(lines: dict[tuple, list[Row]], x_key: str, metrics: Sequence[str], path: Path, title: str) -> bool:
    metrics = [m for m in metrics if any(_has(r, m) for line in lines.values() for r in line)]
    if not lines or not metrics:
        return False
    line_name = _line_namer(lines, x_key)
    colours = _colours([r for line in lines.values() for r in line])
    styles = ["-", "--", ":", "-."]
    ticks = sorted({r["keys"][x_key] for line in lines.values() for r in line})
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
            _errorbar(ax, [r["keys"][x_key] for r in line], [r["mean"][metric] for r in line], None,
                      [r["std"][metric] for r in line], fmt="o" + style, color=colours[dataset],
                      label=line_name(line[0]))
        if ticks[0] > 0 and ticks[-1] / ticks[0] >= 8:  # a sweep over orders of magnitude (β, latent size, lr)
            ax.set_xscale("log", base=2 if ticks[-1] / ticks[0] <= 64 else 10)
            ax.minorticks_off()
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel(key_header(x_key))
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def sweep_figures(rows: Sequence[Row], folder: Path) -> list[tuple[Path, str]]:
    """Quality (and disentanglement) against each numeric setting that tells groups apart; (path, title) each."""
    written = []
    for key in sorted({k for r in rows for k in r["keys"]}):
        lines = _series(rows, key)
        slug = key.replace(".", "_").replace("/", "_")
        for stem, metrics, what in ((f"sweep_{slug}", (elbo_or_loss(rows), *TRADEOFF, "test/cond_accuracy"),
                                     "Quality"),
                                    (f"disentanglement_{slug}", DISENTANGLEMENT, "Disentanglement")):
            title = f"{what} against {key_header(key)} (mean ± std over seeds)"
            if _line_panels(lines, key, metrics, folder / f"{stem}.png", title):
                written.append((folder / f"{stem}.png", title))
    return written


def disentanglement_by_objective(rows: Sequence[Row], path: Path) -> bool:
    """Each disentanglement metric (UDR too), a bar per group with its seed spread: the unsupervised study."""
    rows = sorted((r for r in rows if _has(r, "test/mig")), key=lambda r: (r["dataset"], group_label(r, rows)))
    metrics = [m for m in (*DISENTANGLEMENT, "test/udr") if any(_has(r, m) for r in rows)]
    if len({r["model"] for r in rows}) < 2 or not metrics:
        return False
    colours = _colours(rows)
    several = len({r["dataset"] for r in rows}) > 1
    names = [group_label(r, rows) + (f" · {r['dataset']}" if several else "") for r in rows]
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
