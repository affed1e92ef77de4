"""What a run writes to TensorBoard: curves under vae_lab's tags, HParams, the config, the final metrics."""

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import loggers
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from vae_lab.results.groups import IDENTITY, run_settings, shown_keys
from vae_lab.results.names import header, key_header
from vae_lab.results.runs import Run, find_run_dirs, load_run

# The metrics the HParams tab shows first (it shows the first five): what a sweep is compared by.
HEADLINE = ("test/nelbo", "test/nll_iwae", "test/fid", "test/cond_accuracy", "test/active_units", "test/mig",
            "test/dci_disentanglement", "test/recon", "test/kl", "test/loss", "test/mse", "test/probe_accuracy",
            "time/train_seconds", "time/train_images_per_second", "mem/peak_mb")
METRIC_PREFIXES = ("test/", "time/", "mem/")
LOGGED_BY_TEST_LOOP = ("test/loss", "test/recon", "test/kl", "test/nelbo")  # Lightning's test loop writes these
CURVE_STAGES = ("train", "train_epoch", "val")  # the stages whose loss is a curve, not one end-of-run value


def tag(key: str) -> str | None:
    """A logged metric's TensorBoard tag (None: not written; docs/tensorboard.md, "What opens first")."""
    stage, _, term = key.partition("/")
    if key == "epoch":  # Lightning's epoch counter: a staircase that would sort and open first
        return None
    if term == "loss" and stage in CURVE_STAGES:  # TensorBoard sorts groups A-Z before a-z and opens the first two
        return f"Loss/{stage}"
    return key.replace("kl_dim/test/", "test/kl_dim/")  # a point each: with the other end-of-run values


class TensorBoardLogger(loggers.TensorBoardLogger):
    """Lightning's TensorBoard logger, writing each metric under its `tag`."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics({tag(k): v for k, v in metrics.items() if tag(k)}, step)


def hparam_values(record: dict[str, Any], settings: dict[str, Any],
                 keys: Iterable[str] | None = None) -> dict[str, bool | float | str]:
    """A run's identity, settings (only `keys` when given) and seed for HParams; numbers as text ("8", not 8.0000)."""
    chosen = settings if keys is None else {k: settings.get(k) for k in keys}
    values = {}
    for key, value in {**{k: record.get(k) for k in IDENTITY}, **chosen, "seed": record.get("seed")}.items():
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        values[key] = f"{float(value):g}" if number else value if isinstance(value, (bool, str)) else json.dumps(value)
    return values


def metric_names(records: Iterable[dict[str, Any]]) -> list[str]:
    """The final metrics the records hold, headline ones first (in HEADLINE's order), then the rest sorted."""
    present = {k for record in records for k, v in record.items()
               if k.startswith(METRIC_PREFIXES) and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return [m for m in HEADLINE if m in present] + sorted(present - set(HEADLINE))


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    """One HParams plugin summary (its content travels in the metadata; the tensor is empty)."""
    summary = Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
    return summary


def _hparam_info(name: str, values: Sequence[bool | float | str]) -> api_pb2.HParamInfo:
    info = api_pb2.HParamInfo(name=name, display_name=key_header(name), differs=len(set(map(repr, values))) > 1)
    if all(isinstance(v, bool) for v in values):
        info.type = api_pb2.DATA_TYPE_BOOL
        info.domain_discrete.extend(sorted(set(values)))
    elif all(isinstance(v, float) for v in values):
        info.type = api_pb2.DATA_TYPE_FLOAT64
        info.domain_interval.min_value, info.domain_interval.max_value = min(values), max(values)
    else:
        info.type = api_pb2.DATA_TYPE_STRING
        info.domain_discrete.extend(sorted({str(v) for v in values}))
    return info


def _told_apart(runs: Sequence[tuple[dict[str, Any], dict[str, Any]]], key: str) -> bool:
    """Whether runs differ in `key`; in net or dataset: runs that share the identity before it (net follows model)."""
    before = IDENTITY[:IDENTITY.index(key)] if key in IDENTITY else ()
    pairs = {(tuple(str(r.get(k)) for k in before), str(r.get(key))) for r, _ in runs}
    return len(pairs) > len({shared for shared, _ in pairs})


def experiment_summary(runs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> Summary:
    """The HParams experiment of these (record, settings) runs: what tells them apart, then their final metrics."""
    shown = shown_keys(((tuple(r.get(k) for k in IDENTITY), settings) for r, settings in runs))
    values: dict[str, list] = {}
    for record, settings in runs:
        for name, value in hparam_values(record, settings, shown).items():
            values.setdefault(name, []).append(value)
    told = [name for name in values if name not in (*IDENTITY, "seed") or _told_apart(runs, name)]
    hparams = [_hparam_info(name, values[name]) for name in told or values]  # one run: its identity and seed
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m), display_name=header(m))
               for m in metric_names([record for record, _ in runs])]
    experiment = api_pb2.Experiment(hparam_infos=hparams, metric_infos=metrics)
    return _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))


def session_summaries(record: dict[str, Any], settings: dict[str, Any], start_time: float,
                      end_time: float) -> list[Summary]:
    """A run's HParams session: all its hyper-parameters, and how it ended."""
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=start_time)
    for name, value in hparam_values(record, settings).items():
        field = {bool: "bool_value", float: "number_value", str: "string_value"}[type(value)]
        setattr(start.hparams[name], field, value)
    status = api_pb2.STATUS_SUCCESS if record.get("status") == "ok" else api_pb2.STATUS_FAILURE
    end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=end_time)
    return [_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
            _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))]


def final_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The final metrics to log at the last step: those of metrics.json the test loop has not written already."""
    return {k: float(v) for k, v in record.items() if k.startswith(METRIC_PREFIXES) and k not in LOGGED_BY_TEST_LOOP
            and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def number_text(value: float) -> str:
    """A metric as a table shows it: whole numbers whole, others to four significant digits."""
    return f"{int(value)}" if float(value).is_integer() else f"{value:.4g}"


def results_table(record: dict[str, Any]) -> str:
    """The run's final metrics as one Markdown table (the Text tab's `Results`), headline metrics first."""
    rows = [f"| {header(m)} | {number_text(record[m])} |" for m in metric_names([record])
            if math.isfinite(float(record[m]))]
    return "\n".join(["| metric | value |", "|---|--:|", *rows])


def log_run_end(logger: Any, record: dict[str, Any], step: int, start_time: float, end_time: float,
                experiment: bool) -> None:
    """At the run's end: its final metrics once, its HParams session, and (a single run) its experiment."""
    writer = getattr(logger, "experiment", None)
    if not hasattr(writer, "add_scalar"):
        return
    logger.log_metrics(final_metrics(record), step=step)
    writer.add_text("Results", results_table(record), step)  # capitalised: the Text tab shows it before `config`
    file_writer = writer._get_file_writer()  # torch's SummaryWriter writes raw Summary protos through it
    settings = run_settings(Path(logger.save_dir), record)  # the run folder: Lightning's logger writes under it
    summaries = (([experiment_summary([(record, settings)])] if experiment else [])
                 + session_summaries(record, settings, start_time, end_time))
    for summary in summaries:
        file_writer.add_summary(summary)
    logger.finalize("success")  # flush: the summaries must reach disk before the process ends


def write_sweep_experiment(folder: Path) -> bool:
    """Write the sweep's HParams experiment into its first run's events (in the sweep folder: an empty run `.`)."""
    runs = [run for run in map(load_run, find_run_dirs(folder)) if isinstance(run, Run)]
    events = sorted(path for run in runs for path in run.path.glob("tensorboard/*/events.out.tfevents.*"))
    if not events:
        return False
    from torch.utils.tensorboard.writer import FileWriter

    writer = FileWriter(str(events[0].parent), filename_suffix=".hparams")
    writer.add_summary(experiment_summary([(run.record, run.settings) for run in runs]))
    writer.close()
    return True


def config_text(cfg: DictConfig) -> str:
    """The composed config as Markdown (an indented code block) for the Text tab; Hydra's own settings left out."""
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    return "\n".join("    " + line for line in OmegaConf.to_yaml(job, resolve=True).splitlines())


def log_run_start(logger: Any, cfg: DictConfig) -> None:
    """At the run's start: the composed config as text (no Custom Scalars layout: docs/tensorboard.md says why)."""
    writer = getattr(logger, "experiment", None)
    if not hasattr(writer, "add_text"):
        return
    writer.add_text("config", config_text(cfg))
