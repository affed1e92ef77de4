"""Reading run folders: finished runs, their groups, and the sweep.json and timing.json beside them."""

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vae_lab.errors import ConfigError
from vae_lab.results.groups import IDENTITY, group_key, run_settings
from vae_lab.results.names import TIMING_HEADERS

TIMING_FILE = "timing.json"
PREVIOUS_FILE = "timing_previous.json"  # the pass before, kept when the timing pass runs again on the same sweep
SWEEP_FILE = "sweep.json"


@dataclass
class Run:
    """A finished run: its folder, metrics.json, settings (vae_lab.results.groups) and its group's key."""

    path: Path
    record: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    key: tuple = ()

    @property
    def identity(self) -> tuple[str, ...]:
        """Model, net and dataset, as metrics.json names them."""
        return tuple(str(self.record[k]) for k in IDENTITY)


@dataclass
class Failure:
    """A run folder that cannot be reported, and why."""

    path: Path
    reason: str


def find_run_dirs(root: Path) -> list[Path]:
    """Every folder under root (root included) that holds `.hydra/` or `metrics.json`; not searched further."""
    found = []
    for folder, subdirs, files in os.walk(root):
        if ".hydra" in subdirs or "metrics.json" in files:
            found.append(Path(folder))
            subdirs[:] = []
        else:
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    return found


def run_dir_of(ckpt_path: Path) -> Path:
    """The run folder a checkpoint belongs to (`RUN/checkpoints/x.ckpt` → RUN)."""
    return ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent


def load_run(path: Path) -> Run | Failure:
    """A finished run, or the reason it cannot be reported."""
    metrics = path / "metrics.json"
    if not metrics.is_file():
        return Failure(path, "no metrics.json (the run did not finish)")
    try:
        record = json.loads(metrics.read_text())
    except json.JSONDecodeError as err:
        return Failure(path, f"unreadable metrics.json ({err.msg}, line {err.lineno})")
    except (OSError, UnicodeDecodeError) as err:
        return Failure(path, f"unreadable metrics.json ({type(err).__name__})")
    if not isinstance(record, dict):
        return Failure(path, "metrics.json is not a JSON object")
    if record.get("status") != "ok":
        reason = record.get("reason")
        return Failure(path, f"status={record.get('status')!r}" + (f": {reason}" if reason else ""))
    missing = [k for k in IDENTITY if k not in record]
    if missing:
        return Failure(path, f"metrics.json lacks {', '.join(missing)}")
    seed = record.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):  # NaN would count as a seed
        return Failure(path, f"metrics.json has a bad seed ({seed!r}; a seed is a whole number)")
    try:
        settings = run_settings(path, record)
    except (OSError, ValueError) as err:  # OmegaConf's YAML errors are ValueErrors
        return Failure(path, f"unreadable .hydra/config.yaml ({type(err).__name__})")
    run = Run(path, record, settings)
    run.key = group_key(run.identity, settings)
    return run


def collect(dirs: Sequence[str | Path]) -> tuple[list[Run], list[Failure]]:
    """The runs under the folders, finished and failed; raise if a folder is missing or holds no run."""
    if not dirs:
        raise ConfigError("no folder given: DIR [DIR ...]")
    paths: dict[Path, Path] = {}
    for d in dirs:
        root = Path(d)
        if not root.exists():
            raise ConfigError(f"{d}: no such folder")
        if not root.is_dir():
            raise ConfigError(f"{d}: not a folder")
        found = find_run_dirs(root)
        if not found:
            raise ConfigError(f"{d}: holds no runs (no folder with .hydra/ or metrics.json)")
        for path in found:
            paths.setdefault(path.resolve(), path)
    loaded = [load_run(path) for path in paths.values()]
    return [r for r in loaded if isinstance(r, Run)], [r for r in loaded if isinstance(r, Failure)]


@dataclass
class Group:
    """Runs whose settings differ only in the seed, sorted by seed; `repeat` > 0 for a repeat (see group_runs)."""

    runs: list[Run]
    repeat: int = 0

    @property
    def first(self) -> Run:
        """The run of the lowest seed: the group's settings and identity, and the timing pass's arm."""
        return self.runs[0]


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """The runs in groups; a second run of the same settings and seed starts a `repeat` group of its own."""
    by_key: dict[tuple, list[list[Run]]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: (_value_order(r.record.get("seed")), str(r.path))):
        repeats = by_key[run.key]
        free = next((g for g in repeats if all(r.record.get("seed") != run.record.get("seed") for r in g)), None)
        if free is None:
            repeats.append(free := [])
        free.append(run)
    return [Group(members, repeat) for key in sorted(by_key, key=_in_order) for repeat, members in enumerate(by_key[key])]


def _in_order(key: tuple) -> tuple:
    """A group key as rows are sorted: by identity, then setting by setting, numbers by value (β = 4 before 16)."""
    identity, settings = key
    return identity, tuple((k, _value_order(v)) for k, v in settings)


def _value_order(value: Any) -> tuple:
    """Numbers by value, before anything else by its text: values of any kinds compare."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, float(value), "") if number else (1, 0.0, str(value))


def read_json_file(path: Path) -> dict[str, Any] | None:
    """A JSON file beside the runs (SWEEP_FILE, TIMING_FILE), if there and readable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def attach_timing(groups: Sequence[Group], timing: dict[str, Any] | None) -> None:
    """Each run gets its group's timing-pass medians as `timing/*` (and `timing/*_range` their min–max)."""
    arms = {Path(arm["run"]).resolve(): arm for arm in (timing or {}).get("arms", [])}
    for group in groups:
        arm = next((arms[r.path.resolve()] for r in group.runs if r.path.resolve() in arms), None)
        for run in group.runs if arm else ():
            for metric in TIMING_HEADERS:
                run.record[f"timing/{metric}"] = arm[metric]["median"]
                run.record[f"timing/{metric}_range"] = (arm[metric]["min"], arm[metric]["max"])


def agreement_line(agreed: dict[str, Any]) -> str:
    """One sentence on how a timing pass agrees with the previous one (timing.json's `agreement`)."""
    ranking = ("the same ranking of arms by speed (arms whose windows overlap in both passes count as tied)"
               if agreed["same_ranking"] else
               "a different ranking of arms: " + "; ".join(" against ".join(pair) for pair in agreed["reversals"]))
    return (f"timing pass against the previous one ({PREVIOUS_FILE}): training images/s of the {agreed['arms']} "
            f"arms within {agreed['max_difference']:.1%} of each other, {ranking}")
