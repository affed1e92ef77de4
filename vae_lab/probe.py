"""`python -m vae_lab.probe` (`make compare-probe`): the compare sweep's launcher layouts (n_jobs × threads) timed on a
few short runs, the layouts taking turns, so that compare.yaml's default is chosen by measurement."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vae_lab.cli import entry_point, user_errors
from vae_lab.errors import ConfigError, check_number
from vae_lab.results import write_json


def check(cfg: DictConfig) -> None:
    """One line for a bad layout or repeat count, before anything runs."""
    check_number("repeats", cfg.repeats, whole=True, minimum=1)
    if not cfg.layouts:
        raise ConfigError("layouts is empty: give [n_jobs, threads] pairs, e.g. 'layouts=[[2,1],[1,2]]'")
    for layout in cfg.layouts:
        if len(layout) != 2:
            raise ConfigError(f"layouts: {list(layout)} is not [n_jobs, threads]")
        check_number("layouts' n_jobs", layout[0], whole=True, minimum=1)
        check_number("layouts' threads", layout[1], whole=True, minimum=1)


def sweep_command(jobs: int, threads: int, overrides: list[str], folder: Path) -> list[str]:
    """The compare multirun of one layout into `folder`."""
    return [sys.executable, "-m", "vae_lab.train", "-m", "+experiment=compare", *overrides,
            f"hydra.launcher.n_jobs={jobs}", f"threads={threads}", f"hydra.sweep.dir={folder}"]


def warmup_overrides(overrides: list[str]) -> list[str]:
    """The sweep's overrides cut to its first arm: one run that leaves the caches every layout then finds."""
    return [o.split(",")[0] if o.startswith("+arm=") else o for o in overrides]


def run_sweep(jobs: int, threads: int, overrides: list[str], folder: Path) -> float:
    """Run one layout's sweep into `folder`; its wall seconds from sweep.json."""
    done = subprocess.run(sweep_command(jobs, threads, overrides, folder), check=False)
    if done.returncode != 0:
        raise ConfigError(f"the {jobs}×{threads} sweep failed (exit {done.returncode}); see {folder}")
    return json.loads((folder / "sweep.json").read_text())["wall_seconds"]


def probe(cfg: DictConfig) -> dict[str, Any]:
    """Run every layout `repeats` times in turn; print and save each one's sweep wall times and their median."""
    check(cfg)
    out = Path(cfg.out)
    walls: dict[str, list[float]] = {f"{j}x{t}": [] for j, t in cfg.layouts}
    if cfg.warmup:
        print(f"probe: warm-up (the FID classifier and statistics cached, untimed) → {out / 'warmup'}", flush=True)
        run_sweep(1, 1, warmup_overrides(list(cfg.overrides)), out / "warmup")
    for repeat in range(cfg.repeats):
        for jobs, threads in cfg.layouts:
            folder = out / f"{jobs}x{threads}_r{repeat}"
            print(f"probe: {jobs} jobs × {threads} threads, repeat {repeat + 1} → {folder}", flush=True)
            walls[f"{jobs}x{threads}"].append(run_sweep(jobs, threads, list(cfg.overrides), folder))
    summary = {"overrides": list(cfg.overrides), "wall_seconds": walls,
               "median": {k: statistics.median(v) for k, v in walls.items()}}
    print("| n_jobs × threads | sweep wall s (each repeat) | median |\n|---|---|---|")
    for layout, values in walls.items():
        print(f"| {layout} | {', '.join(f'{v:.0f}' for v in values)} | {summary['median'][layout]:.0f} |")
    write_json(out / "probe.json", summary)
    print(f"wrote {out / 'probe.json'}")
    return summary


@entry_point("probe")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with user_errors():
        probe(cfg)


if __name__ == "__main__":
    main()
