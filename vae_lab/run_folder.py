"""One run per folder: a lock while a run uses it, and no silent overwrite of another run's results."""

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from vae_lab.cli import creatable, user_errors
from vae_lab.errors import ConfigError, RunFolderError, StorageError
from vae_lab.files import file_lock

LOCK = ".lock"  # holds the pid of the run using the folder; flock'ed while it does
RESULTS = ("checkpoints", "metrics.json", "tensorboard")  # what overwrite=true clears
HELD_FOR_HYDRA: dict[Path, ExitStack] = {}  # run folders locked before Hydra wrote the run's config there


@contextmanager
def claim(folder: str | Path, continuing: bool, overwrite: bool, clear: bool = True) -> Iterator[None]:
    """Lock the run folder while the body runs; refuse one another run holds or whose results it would overwrite."""
    folder = Path(folder)
    if continuing and overwrite:
        raise ConfigError("overwrite=true and resume/ckpt_path: choose one (overwrite starts afresh)")
    with ExitStack() as stack:
        held = HELD_FOR_HYDRA.pop(folder.resolve(), None)  # this run's own lock, taken by RunFolderCheck
        stack.enter_context(held if held is not None else locked(folder))
        if clear:
            for stale in [*folder.glob(".*.tmp"), *folder.glob("checkpoints/.*.tmp")]:  # a killed run's half-writes
                stale.unlink(missing_ok=True)
        check_free(folder, continuing, overwrite, clear)
        yield


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the folder's lock, its file naming this process; one line if another process holds it."""
    with ExitStack() as stack:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock = stack.enter_context(file_lock(folder / LOCK, wait=False))
        except OSError as err:
            raise StorageError(f"run folder {folder}: cannot write there ({err.strerror})") from err
        if lock is None:
            owner = (folder / LOCK).read_text().strip()
            raise RunFolderError(f"run folder {folder} is in use by another run"
                                 f"{f' (pid {owner})' if owner else ''}; wait for it, or choose another "
                                 "hydra.run.dir")
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


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


def check_free(folder: Path, continuing: bool, overwrite: bool, clear: bool = True) -> None:
    """Refuse another run's results unless continuing it or `overwrite` (with `clear`: remove them)."""
    found = finished_run(folder)
    if found is None or continuing:
        return
    if not overwrite:
        raise RunFolderError(f"run folder {folder} already holds a run ({found}); resume=true continues it, "
                             "overwrite=true replaces it, or choose another hydra.run.dir")
    for name in RESULTS if clear else ():
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


class RunFolderCheck(Callback):
    """Hydra callback: a run folder that cannot be made in one line, and a single run's lock before Hydra writes."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with user_errors():
            creatable("hydra.sweep.dir", Path(config.hydra.sweep.dir))

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(config.hydra.run.dir)
        with user_errors():
            creatable("hydra.run.dir", folder)
        if "resume" not in config or rank_zero_only.rank != 0:
            return  # not a training run, or a DDP process Lightning started
        continuing = bool(config.get("ckpt_path") or config.get("resume"))
        held = ExitStack()
        with user_errors():
            held.enter_context(claim(folder, continuing, bool(config.get("overwrite")), clear=False))
        HELD_FOR_HYDRA[folder.resolve()] = held  # until the run's own `claim` ends

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        held = HELD_FOR_HYDRA.pop(Path(config.hydra.run.dir).resolve(), None)
        if held is not None:  # the job ended before its `claim`
            held.close()
