"""Time accounting: a run's `time/*`, a callback timing training epochs, the step clock of timed windows."""

import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from vae_lab.data.batches import step_batches
from vae_lab.hardware import cpu_description

Marks = list[tuple[int, int, float]]  # (optimiser steps so far, images so far, time) after each batch
IMPORTED_AT = time.time()  # where /proc cannot say when this process started
# The parts of a run, in order: each `time/<part>_seconds` in metrics.json, none counted in another; a run's
# `time/total_seconds` is their sum plus what no part names (the report shows it as "other").
FIT_PARTS = ("startup", "setup", "train", "validation", "fit_other", "test")
EVAL_PARTS = ("classifier", "eval_encode", "mse", "iwae", "probe", "class_metrics", "fid_samples", "fid_real",
              "fid_features", "class_entropy", "cond_accuracy", "disentanglement")
PARTS = FIT_PARTS + EVAL_PARTS


def process_start() -> float:
    """When this process started (wall clock, s): from /proc on Linux, else when vae_lab.timing was imported."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22
    except (OSError, ValueError, IndexError, AttributeError):
        return IMPORTED_AT
    return time.time() - age


# The end of this process's previous job (a launcher's worker runs several). An entry point calls the functions
# below, which a launcher pickles by reference, so every job of a worker reaches this one value.
_previous_job_end: float | None = None


def job_startup_seconds() -> float:
    """This job's start-up: from the process's start, or from its previous job's end, until now."""
    return max(0.0, time.time() - (_previous_job_end or process_start()))


def job_ended() -> None:
    """Mark the end of a job, from which the process's next job counts its start-up."""
    global _previous_job_end
    _previous_job_end = time.time()


class Stopwatch:
    """Seconds per named part, added up over every `with watch("part"):` (GPU work waited for at each end)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize()
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds

    def summary(self) -> dict[str, float]:
        """The `time/<part>_seconds` entries of metrics.json."""
        return {f"time/{part}_seconds": seconds for part, seconds in self.seconds.items()}


class TrainTimer(pl.Callback):
    """Wall time in training epochs (validation excluded), the images trained on, and validation's time."""

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.validation_seconds = 0.0
        self.images = 0
        self.epoch_seconds: list[float] = []
        self._start: float | None = None
        self._epoch = 0.0
        self._validation_start: float | None = None
        self.this_process = 0.0  # training and validation seconds in this process (a resumed run's earlier not)

    def _pause(self) -> float:
        """Stop the epoch's clock (if running); the time now."""
        synchronize()
        now = time.perf_counter()
        if self._start is not None:
            self._epoch += now - self._start
            self.this_process += now - self._start
            self._start = None
        return now

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._epoch, self._start = 0.0, time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        images = sum(len(x) for x, _ in step_batches(batch))
        self.images += images * trainer.world_size  # under DDP every process trains on as many

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._start is None:  # after a validation within the epoch (trainer.val_check_interval < 1)
            self._start = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._validation_start = self._pause()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self._validation_start is not None:
            synchronize()
            seconds = time.perf_counter() - self._validation_start
            self.validation_seconds += seconds
            self.this_process += seconds
            self._validation_start = None

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._pause()
        self.epoch_seconds.append(self._epoch)
        self.train_seconds += self._epoch

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints, so a resumed run reports the training time of all its epochs."""
        return {"train_seconds": self.train_seconds, "images": self.images, "epoch_seconds": self.epoch_seconds,
                "validation_seconds": self.validation_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_seconds, self.images = state["train_seconds"], state["images"]
        self.epoch_seconds = list(state["epoch_seconds"])
        self.validation_seconds = state.get("validation_seconds", 0.0)  # absent from older checkpoints

    def summary(self) -> dict[str, float]:
        """The timing entries of metrics.json."""
        seconds = self.train_seconds
        return {"time/train_seconds": seconds, "time/validation_seconds": self.validation_seconds,
                "time/epoch_seconds": seconds / max(1, len(self.epoch_seconds)),
                "time/train_images_per_second": self.images / seconds if seconds else 0.0}


def synchronize() -> None:
    """Wait for queued GPU work so wall-clock timings are honest."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def device_name() -> str:
    """What the numbers were measured on."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{cpu_description()} ({torch.get_num_threads()} torch threads)"


class Clock:
    """perf_counter less the time spent paused: each path's windows count only the time of its own turns."""

    def __init__(self, paused: bool = False) -> None:
        self.offset, self.paused_at = 0.0, time.perf_counter() if paused else None

    def now(self) -> float:
        return time.perf_counter() - self.offset

    def pause(self) -> None:
        self.paused_at = time.perf_counter()

    def resume(self) -> None:
        if self.paused_at is not None:
            self.offset += time.perf_counter() - self.paused_at
            self.paused_at = None


class StepClock(pl.Callback):
    """Marks after every batch; at each step in `turns` it pauses its clock and runs that turn (the bench's)."""

    def __init__(self, turns: dict[int, Callable[[], None]] | None = None) -> None:
        self.marks: Marks = []
        self.clock, self.turns = Clock(), dict(sorted((turns or {}).items()))

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, idx) -> None:
        synchronize()
        pairs = step_batches(batch)
        self.marks.append(advance(self.marks, len(pairs), sum(len(x) for x, _ in pairs), self.clock.now()))
        while self.turns and self.marks[-1][0] >= next(iter(self.turns)):
            self.clock.pause()
            self.turns.pop(next(iter(self.turns)))()
            self.clock.resume()


def advance(marks: Marks, steps: int, images: int, now: float) -> tuple[int, int, float]:
    """The next mark: `steps` more optimiser steps over `images` more images, at time `now`."""
    last = marks[-1] if marks else (0, 0, 0.0)
    return last[0] + steps, last[1] + images, now


def window_rates(marks: Marks, warmup: int, repeats: int, steps: int) -> list[float]:
    """Images/s in each timed window of `steps` steps after `warmup` steps."""
    def mark(step: int) -> tuple[int, int, float]:
        return next(m for m in marks if m[0] >= step)

    windows = [(mark(warmup + r * steps), mark(warmup + (r + 1) * steps)) for r in range(repeats)]
    return [(b[1] - a[1]) / (b[2] - a[2]) for a, b in windows]


def throughput(marks: Marks, warmup: int, repeats: int, steps: int) -> dict[str, float]:
    """Images/s over the timed windows: median, min and max."""
    return spread(window_rates(marks, warmup, repeats, steps))


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of the windows' values."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
