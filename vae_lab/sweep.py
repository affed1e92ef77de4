"""Hydra callbacks for multiruns: runs named by what a sweep sweeps, one HParams experiment, sweep.json, failed jobs."""

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vae_lab import SWEPT
from vae_lab.hardware import cpu_description
from vae_lab.results import write_json
from vae_lab.results.groups import dropped
from vae_lab.results.runs import read_json_file
from vae_lab.timing import process_start

log = logging.getLogger(__name__)


class SweepHParams(Callback):
    """Names the jobs' TensorBoard runs by what the sweep sweeps; after the last job, writes its HParams experiment."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
        overrides = [*(f"{k}={v}" for k, v in params.items()), *config.hydra.overrides.task]
        keys = [o.key_or_group for o in OverridesParser.create().parse_overrides(overrides) if o.is_sweep_override()]
        keys = [k for k in dict.fromkeys(keys) if k not in ("model", "data") and (k == "seed" or not dropped(k))]
        os.environ[SWEPT] = ",".join(keys)  # the basic launcher's jobs run in this process, joblib's inherit it

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from vae_lab.viz.tensorboard import write_sweep_experiment

        os.environ.pop(SWEPT, None)
        write_sweep_experiment(Path(config.hydra.sweep.dir))


class SweepSummary(Callback):
    """Names the jobs of this process that failed after the last one, and exits with status 1."""

    def __init__(self) -> None:
        self.jobs: list[Path] = []
        self.failed: list[str] = []
        self.launched: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.launched = time.time()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        folder = Path(config.hydra.runtime.output_dir)
        self.jobs.append(folder)
        status, reason = job_status(folder / "metrics.json")
        if status != "ok":
            self.failed.append(f"{folder}: {reason}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_json(Path(config.hydra.sweep.dir) / "sweep.json", sweep_record(config, self.launched))
        if not self.failed:
            return
        log.error("%d of %d jobs failed:\n  %s", len(self.failed), len(self.jobs), "\n  ".join(self.failed))
        sys.exit(1)


def job_status(metrics: Path) -> tuple[str, str]:
    """A job's status and why, from the metrics.json vae_lab.train writes for every job, finished or failed."""
    record = read_json_file(metrics)
    if record is None:
        return "missing", "no readable metrics.json"
    return record.get("status", "missing"), record.get("reason", "")


def sweep_record(config: DictConfig, launched: float | None) -> dict[str, Any]:
    """sweep.json: the sweep's wall time, from its process's start to its last job's end, and how it ran its jobs."""
    started, ended = process_start(), time.time()
    launcher = config.hydra.launcher
    return {"wall_seconds": ended - started, "launch_seconds": (launched or started) - started,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "launcher": str(launcher.get("_target_", "")).rsplit(".", 1)[-1],
            "n_jobs": launcher.get("n_jobs", 1), "threads": OmegaConf.select(config, "threads", default=None),
            "cpus": os.cpu_count(), "machine": cpu_description(), "overrides": list(config.hydra.overrides.task)}
