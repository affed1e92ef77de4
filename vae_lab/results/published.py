"""The published figures a preset records, beside ours (mean ± 95% CI) in report.md."""

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from scipy import stats

INTRO = ("Each figure of a preset's paper beside ours: the runs with the figure's settings that differ only in the seed, "
         "their mean and its 95% confidence interval (Student's t); a smaller budget than the paper's is said in the "
         "last column.")
NOT_SETTINGS = ("seed", "paths", "ckpt_path", "resume", "overwrite", "tags", "threads")  # not what a run trains


def read_run(folder: Path) -> tuple[DictConfig, dict[str, Any]] | None:
    """A finished run's composed config and metrics.json record; None for a run without both or not ok."""
    config, metrics = folder / ".hydra" / "config.yaml", folder / "metrics.json"
    if not (config.is_file() and metrics.is_file()):
        return None
    try:
        record, cfg = json.loads(metrics.read_text()), OmegaConf.load(config)
    except (OSError, ValueError, yaml.YAMLError):  # the report lists unreadable runs itself
        return None
    return (cfg, record) if isinstance(record, dict) and record.get("status") == "ok" else None


def settings(cfg: DictConfig) -> str:
    """What a run trained, as text: its config without the seed and the folders (runs equal in it are seeds)."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    return json.dumps({k: v for k, v in tree.items() if k not in NOT_SETTINGS}, sort_keys=True, default=str)


def matches(cfg: DictConfig, match: dict[str, Any]) -> bool:
    """Whether a run's config has every value a figure names (dotted keys)."""
    return all(OmegaConf.select(cfg, key, default=None) == value for key, value in match.items())


def interval(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95% confidence interval (Student's t, n − 1 degrees of freedom); None for one."""
    n, mean = len(values), sum(values) / len(values)
    if n < 2:
        return mean, None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)


def budget(cfg: DictConfig, record: dict[str, Any], paper_epochs: int | None) -> str:
    """The epochs a run trained (on a subset, if so), and whether its budget was below the paper's."""
    planned = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    subset = OmegaConf.select(cfg, "data.train_subset", default=None)
    trained = f"{record.get('epochs', '?')} epochs (at most {planned})"
    if subset:
        trained += f" on {subset} training images (data.train_subset)"
    if paper_epochs is not None and planned is not None and planned < paper_epochs:
        return f"{trained}: smaller than the paper's {paper_epochs}"
    return trained


def figure_rows(block: dict[str, Any], runs: Sequence[tuple[DictConfig, dict[str, Any]]]) -> list[str]:
    """One table row per figure and group of matching runs (the same settings, different seeds)."""
    rows = []
    for figure in block["figures"]:
        groups: dict[str, list[tuple[DictConfig, dict[str, Any]]]] = {}
        for cfg, record in runs:
            if matches(cfg, figure["match"]) and record.get(block["metric"]) is not None:
                groups.setdefault(settings(cfg), []).append((cfg, record))
        label, paper = figure.get("label", figure["match"]), float(figure["value"])
        if not groups:
            rows.append(f"| {label} | 0 | not yet run | {paper:.2f} | | |")
        for group in groups.values():
            mean, half = interval([float(record[block["metric"]]) for _, record in group])
            ours = f"{mean:.2f}" + (f" ± {half:.2f}" if half is not None else " (one seed)")
            cfg, record = group[0]
            samples = OmegaConf.select(cfg, "eval.iwae_samples", default=None)
            rows.append(f"| {label} | {len(group)} | {ours} | {paper:.2f} | {mean - paper:+.2f} | "
                        f"{budget(cfg, record, block.get('epochs'))}; {samples} test samples |")
    return rows


def published_section(folders: Sequence[Path]) -> str:
    """report.md's `Published figures` section for the runs whose presets record figures; '' when none does."""
    runs = [run for run in map(read_run, folders) if run is not None]
    blocks: dict[str, tuple[dict[str, Any], list]] = {}
    for cfg, record in runs:
        block = cfg.get("published")
        if block is not None:
            plain = OmegaConf.to_container(block, resolve=True)
            blocks.setdefault(json.dumps(plain, sort_keys=True), (plain, []))[1].append((cfg, record))
    lines = []
    for block, members in blocks.values():
        lines += ["", f"### {block['source']}", "", f"{block['table']}; `{block['metric']}`.", "",
                  "| figure | runs | ours (mean ± 95% CI over seeds) | paper | ours − paper | our budget |",
                  "|---|---|---|---|---|---|", *figure_rows(block, members)]
    if not lines:
        return ""
    return "\n".join(["", "## Published figures", "", INTRO, *lines]) + "\n"
