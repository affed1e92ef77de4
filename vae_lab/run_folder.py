"""One run per folder: a lock while a run uses it, and no silent overwrite of another run's results."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vae_lab.errors import ConfigError, RunFolderError

LOCK = ".lock"  # holds the pid of the run using the folder; flock'ed while it does
RESULTS = ("checkpoints", "metrics.json", "tensorboard")  # what overwrite=true clears


@contextmanager
def claim(folder: str | Path, continuing: bool, overwrite: bool) -> Iterator[None]:
    """Hold an exclusive lock on the run folder while the body runs; refuse (one line) a folder another run holds,
    or one holding a run's results unless this run continues it (`continuing`) or `overwrite` (which clears them)."""
    folder = Path(folder)
    if continuing and overwrite:
        raise ConfigError("overwrite=true and resume/ckpt_path: choose one (overwrite starts afresh)")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip()
            raise RunFolderError(f"run folder {folder} is in use by another run"
                                 f"{f' (pid {owner})' if owner else ''}; wait for it, or choose another "
                                 "hydra.run.dir") from None
        try:
            lock.truncate(0)
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            for stale in [*folder.glob(".*.tmp"), *folder.glob("checkpoints/.*.tmp")]:  # a killed run's half-writes
                stale.unlink(missing_ok=True)
            check_free(folder, continuing, overwrite)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def finished_run(folder: Path) -> str | None:
    """What shows that a folder holds a run's results (its checkpoints, or a finished metrics.json), or None."""
    checkpoints = sorted(p.name for p in (folder / "checkpoints").glob("*.ckpt"))
    if checkpoints:
        return f"checkpoints/{checkpoints[0]}" + (f" and {len(checkpoints) - 1} more" if len(checkpoints) > 1 else "")
    try:
        status = json.loads((folder / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None
    return "metrics.json" if status == "ok" else None


def check_free(folder: Path, continuing: bool, overwrite: bool) -> None:
    """Refuse a folder with another run's results unless continuing it; `overwrite` removes them first."""
    found = finished_run(folder)
    if found is None or continuing:
        return
    if not overwrite:
        raise RunFolderError(f"run folder {folder} already holds a run ({found}); resume=true continues it, "
                             "overwrite=true replaces it, or choose another hydra.run.dir")
    for name in RESULTS:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
