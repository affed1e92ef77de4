"""`python -m vae_lab.report DIR [DIR ...]`: tabulate and plot every run under the folders (docs/results.md)."""

import csv
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from vae_lab.cli import entry_point, positional_dirs, writable
from vae_lab.errors import ConfigError, VaeLabError, check_flag
from vae_lab.results.groups import IDENTITY, shown_keys
from vae_lab.results.names import HEADERS, HEADLINE, header, key_header
from vae_lab.results.published import published_section
from vae_lab.results.runs import (
    SWEEP_FILE,
    TIMING_FILE,
    Failure,
    Group,
    Run,
    agreement_line,
    attach_timing,
    collect,
    group_runs,
    read_json_file,
)
from vae_lab.timing import PARTS
from vae_lab.viz import plots

METRIC_PREFIXES = ("test/", "timing/", "time/", "mem/")  # timing/: the timing pass's (timing.json), not the sweep's
REPEAT = "repeat"  # the column of a group that repeats another's settings and seeds (vae_lab.results.runs.group_runs)
FIGURES = {"quality_vs_time": (plots.quality_vs_time, "Quality against training seconds per epoch"),
           "disentanglement_objectives": (plots.disentanglement_by_objective, "Disentanglement per objective")}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numeric(value: Any) -> bool:
    """A number of any kind (NaN and infinities included) or null: a metric's value, measured or not."""
    return value is None or isinstance(value, (int, float)) and not isinstance(value, bool)


def _why_left_out(value: Any) -> str:
    return "null (not measured, or not finite when written)" if value is None else str(value)


def metric_names(runs: Sequence[Run]) -> list[str]:
    """The numeric metrics any run has: known ones in table order, then the rest sorted."""
    names = {k for run in runs for k, v in run.record.items() if k.startswith(METRIC_PREFIXES) and _numeric(v)}
    known = [m for m in HEADERS if m in names]
    rest = sorted(names - set(known), key=lambda m: (METRIC_PREFIXES.index(m.split("/")[0] + "/"), m))
    return known + rest


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1; 0 for a single value); None for no values."""
    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def key_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The columns that say what a row is: identity, the settings that tell groups apart, and `repeat`."""
    repeats = [REPEAT] if any(row[REPEAT] for row in rows) else []
    return [*IDENTITY, *rows[0]["keys"], *repeats] if rows else list(IDENTITY)


def summarise(groups: Sequence[Group], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per group: identity, `keys`, n, seeds, runs, and mean/std/count dicts keyed by metric."""
    shown = shown_keys((g.first.identity, g.first.settings) for g in groups)
    rows = []
    for group in groups:
        members = group.runs
        row: dict[str, Any] = dict(zip(IDENTITY, group.first.identity))
        row.update(keys={k: group.first.settings.get(k) for k in shown}, repeat=group.repeat,
                   settings=group.first.settings, n=len(members), seeds=[r.record.get("seed") for r in members],
                   runs=members, mean={}, std={}, count={}, left_out=[])
        for metric in metrics:
            values = [r.record[metric] for r in members if _number(r.record.get(metric))]
            row["mean"][metric], row["std"][metric] = mean_std(values)
            row["count"][metric] = len(values)
            row["left_out"] += [(r.path, metric, _why_left_out(r.record[metric])) for r in members
                                if metric in r.record and _numeric(r.record[metric]) and not _number(r.record[metric])]
        rows.append(row)
    return rows


def add_udr(groups: Sequence[Group], num_points: int, data_dir: str | None) -> list[str]:
    """`test/udr` for each run of a group of ≥ 2 seeds with checkpoints; notes on groups not scored."""
    notes = []
    for group in groups:
        members = group.runs
        if len(members) < 2:
            continue
        if not all((r.path / "checkpoints" / "last.ckpt").is_file() for r in members):
            notes.append(f"UDR left out for {members[0].path.name} and its seeds: not every run has checkpoints/last.ckpt")
            continue
        try:
            scores = udr_of_group([r.path / "checkpoints" / "last.ckpt" for r in members], num_points, data_dir)
        except (VaeLabError, OSError, ValueError) as err:
            notes.append(f"UDR left out for {members[0].path.name} and its seeds: {err}")
            continue
        for run, score in zip(members, scores):
            run.record["test/udr"] = score
    return notes


def udr_of_group(checkpoints: Sequence[Path], num_points: int, data_dir: str | None) -> list[float]:
    """UDR of each checkpoint's model against the others, on the same test images (the first checkpoint's data)."""
    import torch

    from vae_lab.data.datamodule import test_datamodule
    from vae_lab.metrics.udr import udr
    from vae_lab.models import load_model, read_checkpoint

    test = test_datamodule(read_checkpoint(checkpoints[0]), data_dir, download=False).splits["test"]
    x, y = test[torch.arange(min(num_points, len(test)))]
    representations, kls = [], []
    with torch.no_grad():
        for ckpt in checkpoints:
            model = load_model(ckpt)
            labels = y if model.conditional else None
            mu, logvar = model.encode(x.to(model.device), labels)
            representations.append(mu.cpu().double().numpy())
            kls.append(model.kl_per_dimension(mu, logvar, labels).mean(0).cpu().double().numpy())
    return udr(representations, kls)["model_scores"]


def write_csv(rows: Sequence[dict[str, Any]], metrics: Sequence[str], path: Path) -> None:
    """report.csv: group keys, n, then <metric>_mean and <metric>_std for each metric (empty = not measured)."""
    keys = key_columns(rows)
    counted = {m for m in metrics if any(0 < row["count"][m] < row["n"] for row in rows)}  # means over fewer than n
    stats = {m: ("mean", "std", "n") if m in counted else ("mean", "std") for m in metrics}
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*keys, "n", *[f"{m}_{s}" for m in metrics for s in stats[m]]])
        for row in rows:
            cells = [_key_value(row, k) for k in keys] + [row["n"]]
            for metric in metrics:
                cells += [row["mean"][metric], row["std"][metric]] + ([row["count"][metric]] if metric in counted else [])
            writer.writerow(["" if c is None else c for c in cells])


def _cell(row: dict[str, Any], metric: str) -> str:
    """A table cell: mean ± std, with the runs it is over when that is fewer than the group's n."""
    count = row["count"][metric]
    cell = _fmt(row["mean"][metric], row["std"][metric] if count > 1 else None)
    return cell + (f" (n={count})" if 0 < count < row["n"] else "")


def _fmt(mean: float | None, std: float | None) -> str:
    """"mean ± std" with four significant digits in the mean and the std to the same decimals."""
    if mean is None:
        return "–"
    if abs(mean) < 1e-9 and (std is None or abs(std) < 1e-9):
        mean, std = 0.0, None if std is None else 0.0  # float round-off of an exact zero: no 20-digit cells
    decimals = max(0, 3 - math.floor(math.log10(abs(mean)))) if mean else 3
    return f"{mean:.{decimals}f}" if std is None else f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def _timing_cell(row: dict[str, Any], metric: str) -> str:
    """A timing-pass cell: the arm's median over its windows, and their min–max."""
    span = row["runs"][0].record.get(f"{metric}_range")
    if row["mean"][metric] is None or not span:
        return "–"
    return f"{_fmt(row['mean'][metric], None)} ({_fmt(span[0], None)}–{_fmt(span[1], None)})"


def _table(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[str]:
    """A Markdown table: the group keys, n, and mean ± std of each metric."""
    keys = key_columns(rows)
    headers = [key_header(k) for k in keys] + ["n"] + [header(m) for m in metrics]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([":--"] * 3 + ["--:"] * (len(headers) - 3)) + "|"]
    for row in rows:
        cells = [_key_cell(_key_value(row, k)) for k in keys] + [str(row["n"])]
        cells += [_timing_cell(row, m) if m.startswith("timing/") else _cell(row, m) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _key_value(row: dict[str, Any], key: str) -> Any:
    """A row's value of an identity column or a shown setting (None where the group has no such setting)."""
    return row[key] if key in (*IDENTITY, REPEAT) else row["keys"].get(key)


def _key_cell(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _show(path: Path, base: Path) -> str:
    rel = os.path.relpath(path, base)
    return str(path) if rel == "." else rel


def markdown(rows: Sequence[dict[str, Any]], metrics: Sequence[str], failures: Sequence[Failure],
             figures: Sequence[tuple[Path, str]], notes: Sequence[str], dirs: Sequence[str], out: Path) -> str:
    """report.md: the results table, the failed runs, and the figures."""
    n_runs = sum(r["n"] for r in rows)
    lines = ["# vae_lab report", "",
             f"{n_runs} finished runs in {len(rows)} groups, {len(failures)} failed, from "
             + ", ".join(f"`{d}`" for d in dirs) + ".",
             ("A group is the runs whose composed configs differ only in the seed; the columns before n are the "
              "settings that tell the groups apart (a `repeat` column marks a second run of the same settings and "
              "seed: a row of its own, never averaged as a seed). "
              "Cells are mean ± std over the seeds of a group (std with ddof=1; 0 for a single run); "
              "n is the number of runs (a single run shows its value alone). Unrounded values: "
              "[report.csv](report.csv). Columns marked (timing pass) come from timing.json: every arm timed in "
              "one process in interleaved windows, median (min–max) over the windows; columns marked (wall clock) "
              "are the sweep's own, on whatever shared the machine with its jobs."), ""]
    if rows:
        measured = {m for row in rows for m, v in row["mean"].items() if v is not None}
        quality = ["test/loss"] if "test/nelbo" not in measured else []  # runs from before −ELBO was recorded
        timed = {"timing/train_images_per_second", "timing/epoch_seconds"} <= measured  # the pass's, not the sweep's
        time_columns = ["timing/train_images_per_second", "timing/epoch_seconds"] if timed else []
        headline = [m for m in [*quality, *HEADLINE, *time_columns] if m in measured
                    and not (timed and m == "time/train_seconds")]
        lines += ["## Headline", "", *_table(rows, headline), "", "## All metrics", "", *_table(rows, metrics)]
    else:
        lines.append("No run finished, so there is nothing to tabulate.")
    left_out = sorted((p, m, why) for row in rows for p, m, why in row["left_out"] if m in metrics)
    if left_out:
        lines += ["", f"## Left out of the means ({len(left_out)})", "",
                  ("Values that are not finite numbers: each is left out of its group's mean and std, which are then "
                   "over fewer runs than n (the cell says how many, as `(n=…)`; report.csv has a `_n` column)."), ""]
        lines += [f"- `{_show(p, out)}`: {m} = {why}" for p, m, why in left_out]
    lines += ["", f"## Failed runs ({len(failures)})", ""]
    if failures:
        lines += [f"- `{_show(f.path, out)}`: {f.reason}" for f in sorted(failures, key=lambda f: str(f.path))]
    else:
        lines.append("None: every run finished with status ok.")
    if figures or notes:
        lines += ["", "## Figures"]
    for fig, title in figures:
        lines += ["", f"### {title}", "", f"![{title}]({fig.relative_to(out).as_posix()})"]
    if notes:
        lines += [""] + [f"- _{note}_" for note in notes]
    return "\n".join(lines) + "\n"


def _pick(runs: Sequence[Run], model: str, dataset: str) -> tuple[Run | None, str | None]:
    """The run whose checkpoint shows a model best (default settings first); or why there is none."""
    candidates = [r for r in runs if r.record["model"] == model and r.record["dataset"] == dataset]
    if not candidates:
        return None, None
    with_ckpt = [r for r in candidates if (r.path / "checkpoints" / "last.ckpt").is_file()]
    if not with_ckpt:
        return None, f"{dataset}: no {model} run has checkpoints/last.ckpt, so its panel is left out"

    def preference(run: Run) -> tuple:
        beta, capacity, latent = (run.record.get(k) for k in ("beta", "capacity_max", "latent_dim"))
        distance = abs(math.log(beta / 4)) if model == "beta_vae" and beta and beta > 0 else 0.0
        accuracy = run.record.get("test/cond_accuracy")
        best_first = -accuracy if isinstance(accuracy, (int, float)) else 0.0  # CVAEs: the best conditional one
        return bool(capacity), distance, best_first, latent != 10, str(run.record.get("seed")), str(run.path)

    return min(with_ckpt, key=preference), None


def sample_panels(runs: Sequence[Run], dataset: str, data_dir: str | None, seed: int,
                  out: Path) -> tuple[list[tuple[str, np.ndarray, list[str]]], list[str]]:
    """The CVAE class grid and the β-VAE traversals of one dataset, as far as their runs allow."""
    import torch
    from torchvision.utils import make_grid

    from vae_lab.data.datamodule import test_datamodule
    from vae_lab.data.mnist import CLASS_NAMES
    from vae_lab.models import load_model, read_checkpoint
    from vae_lab.viz import grids

    panels, notes = [], []
    cvae, why_not = _pick(runs, "cvae", dataset)
    beta_vae, beta_why_not = _pick(runs, "beta_vae", dataset)
    if cvae is None and beta_vae is None and why_not is None and beta_why_not is None:
        return [], []
    notes += [n for n in (why_not, beta_why_not) if n]
    if cvae is None and why_not is None:
        notes.append(f"{dataset}: no cvae run, so the class-grid panel is left out")
    if beta_vae is None and beta_why_not is None:
        notes.append(f"{dataset}: no beta_vae run, so the traversal panel is left out")
    if cvae is not None:
        try:
            model = load_model(cvae.path / "checkpoints" / "last.ckpt")
            torch.manual_seed(seed)
            grid = grids.class_grid(model, per_class=8)
            names = CLASS_NAMES.get(dataset, [])
            names = names if len(names) == model.num_classes else [str(i) for i in range(model.num_classes)]
            panels.append((f"CVAE samples, a row per class\n({_show(cvae.path, out)})",
                           grid.permute(1, 2, 0).cpu().numpy(), names))
        except (VaeLabError, OSError) as err:
            notes.append(f"{dataset}: class grid left out: {err}")
    if beta_vae is not None:
        ckpt = beta_vae.path / "checkpoints" / "last.ckpt"
        try:
            model = load_model(ckpt)
            test = test_datamodule(read_checkpoint(ckpt), data_dir, download=False).splits["test"]
            x, y = test[torch.arange(min(256, len(test)))]  # a run on a training subset is tested on fewer
            t = grids.traversal(model, x, y if model.conditional else None, steps=9, rows=10)
            grid = make_grid(t.images, nrow=t.steps, pad_value=0.5)
            title = f"β-VAE (β={beta_vae.record.get('beta', 1.0):g}) {t.title()}\n({_show(beta_vae.path, out)})"
            panels.append((title, grid.permute(1, 2, 0).cpu().numpy(), t.labels()))
        except (VaeLabError, OSError) as err:
            notes.append(f"{dataset}: traversal panel left out: {err}")
    return panels, notes


def draw_figures(rows: Sequence[dict[str, Any]], runs: Sequence[Run], cfg: DictConfig,
                 out: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """Write the figures that the groups allow; return their paths and titles, and notes on what was left out."""
    fig_dir = out / "figures"
    written, notes = [], []
    for name, (draw, title) in FIGURES.items():
        path = fig_dir / f"{name}.png"
        if draw(rows, path):
            written.append((path, title))
    written += plots.sweep_figures(rows, fig_dir)
    if cfg.samples:
        for dataset in sorted({str(run.record["dataset"]) for run in runs}):
            panels, why = sample_panels(runs, dataset, cfg.data_dir, cfg.seed, out)
            notes += why
            path = fig_dir / f"samples_{dataset}.png"
            if plots.image_panels(panels, path, title=dataset):
                written.append((path, f"Samples: {dataset}"))
    return written, notes


def report(cfg: DictConfig) -> dict[str, Any]:
    """Write report.csv, report.md and the figures into the first folder; return a summary."""
    dirs = [cfg.dirs] if isinstance(cfg.dirs, str) else [str(d) for d in cfg.dirs or []]
    runs, failures = collect(dirs)
    out = Path(dirs[0])
    check_flag("samples", cfg.samples)
    writable("report.md, report.csv and figures/", out)  # before UDR and the figures
    groups = group_runs(runs)
    timing = read_json_file(out / TIMING_FILE)
    attach_timing(groups, timing)
    udr_notes = add_udr(groups, int(cfg.udr_points), cfg.data_dir) if cfg.get("udr_points") else []
    metrics = metric_names(runs)
    shown = list(cfg.columns) if cfg.get("columns") else [m for m in metrics if m not in PART_KEYS]
    unknown = [m for m in shown if m not in metrics]
    if unknown:  # a typo would otherwise leave the table without the columns asked for
        raise ConfigError(f"columns: no run has {unknown}; the runs have {metrics}")
    rows = summarise(groups, metrics)
    figures, notes = draw_figures(rows, runs, cfg, out)
    notes = udr_notes + notes
    csv_path, md_path = out / "report.csv", out / "report.md"
    write_csv(rows, metrics, csv_path)
    md_path.write_text(markdown(rows, shown, failures, figures, notes, dirs, out)
                       + published_section([r.path for r in runs])
                       + time_section(runs, read_json_file(out / SWEEP_FILE), timing))
    print(f"report: {len(rows)} groups from {len(runs)} finished runs; {len(failures)} failed runs"
          + (" (listed in report.md)" if failures else ""))
    for failure in failures:
        print(f"  failed: {failure.path}: {failure.reason}")
    for path, metric, why in sorted(x for row in rows for x in row["left_out"] if x[1] in shown):
        print(f"  left out of the mean: {path}: {metric} = {why}")
    for note in notes:
        print(f"  note: {note}")
    written = [csv_path, md_path, *(path for path, _ in figures)]
    for path in written:
        print(f"wrote {path}")
    return {"groups": len(rows), "runs": len(runs), "failures": len(failures), "written": written}


PART_KEYS = {f"time/{part}_seconds" for part in PARTS if part != "train"} | {"time/total_seconds"}  # in the time
PART_NAMES = {"startup": "process start-up (interpreter, imports, Hydra)", "setup": "setup and data loading",
              "train": "training epochs", "validation": "validation", "fit_other": "fit: checkpoints, logging, other",
              "test": "test-set loss", "classifier": "FID classifier (load, or train once)",
              "eval_encode": "evaluation: posterior means", "mse": "evaluation: reconstruction",
              "iwae": "evaluation: IWAE bound", "probe": "evaluation: linear probe",
              "class_metrics": "evaluation: MIG, SAP, DCI, explicitness", "fid_samples": "FID: generating samples",
              "fid_real": "FID: real images' statistics (cached)", "fid_features": "FID: samples' features",
              "class_entropy": "class entropy", "cond_accuracy": "conditional accuracy",
              "disentanglement": "disentanglement metrics"}  # section's table, not the results table


def time_section(runs: Sequence[Run], sweep: dict[str, Any] | None, timing: dict[str, Any] | None) -> str:
    """Where the time went: the sweep's wall time and each part's total over its runs (metrics.json's time/*)."""
    lines = ["", "## Where the time went", ""]
    if sweep:
        threads = sweep.get("threads")
        lines.append(f"Sweep wall clock: **{sweep['wall_seconds']:,.0f} s** ({sweep['wall_seconds'] / 60:.1f} min), "
                     f"from its process's start to its last job's end (sweep.json); {sweep.get('n_jobs')} job(s) at "
                     f"once × {threads or 'the default number of'} thread(s) each ({sweep.get('launcher')}) on "
                     f"{sweep.get('machine') or str(sweep.get('cpus')) + ' CPUs'}.")
    else:
        lines.append("No sweep.json here (not a multirun folder), so no sweep wall time.")
    if timing:
        lines += ["", f"Timing pass (timing.json): {timing.get('device')}, {timing.get('threads')} thread(s), "
                  f"{timing['options']['repeats']} windows per arm."
                  + (f" Against the pass before it: {agreement_line(timing['agreement']).split(': ', 1)[1]}."
                     if timing.get("agreement") else "")]
    timed = timing is not None
    totals = [r.record["time/total_seconds"] for r in runs if _number(r.record.get("time/total_seconds"))]
    if not totals:
        return "\n".join(lines + ["", "The runs record no time/total_seconds, so there is no breakdown."]) + "\n"
    total = sum(totals)
    lines += ["", f"Job time summed over the {len(totals)} runs that record it: {total:,.0f} s"
              + (f", {total / sweep['wall_seconds']:.2f} jobs busy on average." if sweep else "."),
              "Wall-clock seconds, on whatever else shared the machine"
              + (": the comparison's time columns come from the timing pass (timing.json)." if timed else
                 "; `python -m vae_lab.timing_pass DIR` times every arm in one process for the comparison's time "
                 "columns."), "",
              "| part | total s | share | per run s |", "|:--|--:|--:|--:|"]
    accounted = 0.0
    for part in PARTS:
        values = [r.record.get(f"time/{part}_seconds") for r in runs if _number(r.record.get("time/total_seconds"))]
        values = [v for v in values if _number(v)]
        if not values:
            continue
        accounted += sum(values)
        lines.append(f"| {PART_NAMES.get(part, part)} | {sum(values):,.1f} | {sum(values) / total:.1%} "
                     f"| {sum(values) / len(totals):,.1f} |")
    other = total - accounted
    lines += [f"| other (not in a part) | {other:,.1f} | {other / total:.1%} | {other / len(totals):,.1f} |",
              f"| **all** | {total:,.1f} | 100% | {total / len(totals):,.1f} |"]
    return "\n".join(lines) + "\n"


main = entry_point("report")(report)  # python -m vae_lab.report


if __name__ == "__main__":
    sys.argv[1:] = positional_dirs(sys.argv[1:])
    main()
