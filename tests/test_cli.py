"""The entry points as a user runs them: train, a multirun, generate, and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import CLASSIFIER_CACHE, EVAL_FAST, FAST, ROOT, compose_cfg, run_cli, run_cli_cases
from tests.test_projector import check_projector
from vae_lab.timing import EVAL_PARTS, PARTS

EVAL_KEYS = ("test/mse", "test/nll_iwae", "test/active_units", "test/fid", "test/class_entropy",
             "test/probe_accuracy", "test/cond_accuracy", "test/cond_accuracy_t0.5", "time/sample_images_per_second",
             "time/iwae_seconds", "time/eval_seconds", "mem/peak_mb")


def run_events(run, version: str = "cvae_mnist") -> EventAccumulator:
    """A run's TensorBoard events, all kinds kept, from RUN/tensorboard/<version> (TensorBoard's run name)."""
    guidance = {"images": 0, "scalars": 0, "histograms": 0, "tensors": 0}
    return EventAccumulator(str(run / "tensorboard" / version), size_guidance=guidance).Reload()


def test_train_writes_metrics_checkpoint_and_events(cvae_run):
    metrics = json.loads((cvae_run / "metrics.json").read_text())
    for key in ("model", "dataset", "net", "beta", "seed", "epochs", "params", "test/loss", "test/recon",
                "test/kl", "time/train_seconds", "time/train_images_per_second"):
        assert key in metrics, key
    assert metrics["model"] == "cvae" and metrics["net"] == "mlp" and metrics["dataset"] == "mnist"
    assert metrics["test/loss"] == pytest.approx(metrics["test/recon"] + metrics["test/kl"], rel=1e-4)
    assert metrics["time/train_images_per_second"] > 0 and metrics["params"] > 0
    for key in EVAL_KEYS:
        assert metrics.get(key) is not None, key
    parts = {part: metrics[f"time/{part}_seconds"] for part in PARTS if part != "disentanglement"}  # every one
    assert all(seconds >= 0 for seconds in parts.values()) and parts["startup"] > 0.5 and parts["train"] > 0
    assert sum(parts.values()) <= metrics["time/total_seconds"] + 0.1  # no time counted twice
    eval_parts = sum(parts[p] for p in EVAL_PARTS if p in parts)
    assert 0.5 * metrics["time/eval_seconds"] < eval_parts <= metrics["time/eval_seconds"]
    assert list((Path(CLASSIFIER_CACHE) / "fid").glob("real-*.pt"))  # the FID statistics beside their classifier
    assert 0 <= metrics["test/cond_accuracy"] <= 1 and 0 <= metrics["test/class_entropy"] <= 2.31
    assert (cvae_run / "checkpoints" / "last.ckpt").is_file()
    assert list((cvae_run / "checkpoints").glob("best-*.ckpt"))
    assert (cvae_run / ".hydra" / "config.yaml").is_file()
    log = (cvae_run / "train.log").read_text()  # the run's log: Lightning's messages and where the results went
    assert "`Trainer.fit` stopped" in log and f"wrote {cvae_run / 'metrics.json'}: test/" in log
    events = run_events(cvae_run)
    scalars = set(events.Tags()["scalars"])
    assert {"Loss/train", "train/recon", "Loss/train_epoch", "Loss/val", "val/kl", "test/loss", "kl_dim/val/0"} <= scalars, scalars
    assert events.PluginTagToContent("hparams"), "the HParams tab needs the hparams summary"
    images = set(events.Tags()["images"])
    assert {"images/reconstructions", "images/traversals", "images/class_grid", "latent/kl_per_latent",
            "curves/train_vs_val"} <= images and "images/samples" not in images  # a CVAE's: the labelled class grid
    names = check_projector(cvae_run / "tensorboard" / "cvae_mnist", 200, 8, 28)  # FAST: a test set of train_subset // 10
    assert set(names) <= {str(i) for i in range(10)} and len(set(names)) > 1  # MNIST's class names


def test_final_metrics_are_logged_once_at_the_last_step(cvae_run):
    """No step-0 copies: every final metric of metrics.json is one point at the run's last step, with its value."""
    metrics = json.loads((cvae_run / "metrics.json").read_text())
    events = run_events(cvae_run)
    last = max(e.step for tag in events.Tags()["scalars"] for e in events.Scalars(tag))
    finals = [k for k, v in metrics.items() if k.startswith(("test/", "time/", "mem/")) and v is not None]
    assert {"test/nelbo", "test/nll_iwae", "test/fid", "mem/peak_mb", "time/train_seconds"} <= set(finals)
    for key in finals:
        points = events.Scalars(key)
        assert [p.step for p in points] == [last], key
        assert points[0].value == pytest.approx(metrics[key], rel=1e-5, abs=1e-5), key
    table = events.Tensors("Results/text_summary")[0].tensor_proto.string_val[0].decode().splitlines()
    assert table[0] == "| metric | value |" and len(table) > 10  # the end-of-run values, as one table


def test_scalars_are_grouped_and_tensorboard_gets_its_extras(cvae_run):
    """Per-dimension KL in its own group (and really per dimension for the mixture prior); no nelbo curve that
    repeats the loss; the learning rate, the config text; no Custom Scalars layout (its smoothed charts invent gaps on
    short runs: the curves are a figure)."""
    events = run_events(cvae_run)
    scalars = set(events.Tags()["scalars"])
    per_dim = [events.Scalars(f"kl_dim/val/{d}")[-1].value for d in range(8)]
    assert len({round(v, 4) for v in per_dim}) > 1, "one KL spread evenly is not a per-dimension KL"
    assert not [t for t in scalars if t.startswith(("val/kl_dim", "kl_dim/test"))]
    assert [len(events.Scalars(f"test/kl_dim/{d}")) for d in range(8)] == [1] * 8  # one-dots: with the other test/
    assert not {"train/nelbo", "val/nelbo", "train_epoch/nelbo"} & scalars and "test/nelbo" in scalars
    assert "lr-Adam" in scalars and events.Scalars("lr-Adam")[0].value == pytest.approx(2e-3)
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "_target_: vae_lab.models.cvae.CVAE" in text and "prior_components: 10" in text
    assert "custom_scalars__config__" not in events.Tags()["tensors"]


def test_the_loss_curves_are_the_first_group_and_no_epoch_staircase(cvae_run):
    """TensorBoard groups tags by their first `/` part, sorts the groups by character code (digits, `_` and `/` first:
    none here; then A-Z before a-z) and opens the first two (the Time Series tab over all its cards, the Scalars tab
    over scalars): `Loss` (train, train's epoch means, validation) comes first; Lightning's `epoch` is not written."""
    events = run_events(cvae_run)
    tags = events.Tags()
    cards = {t.split("/")[0] for kind in ("scalars", "histograms", "images") for t in tags[kind]}
    assert not [g for g in cards if g[0] in "0123456789_/"] and min(cards) == "Loss", sorted(cards)
    assert sorted(t for t in tags["scalars"] if t.startswith("Loss/")) == ["Loss/train", "Loss/train_epoch", "Loss/val"]
    assert "epoch" not in tags["scalars"] and not {"train/loss", "train_epoch/loss", "val/loss"} & set(tags["scalars"])


def test_the_latent_histograms_are_one_per_latent(cvae_run):
    """μ and log σ² of the validation batch, a histogram per latent (`latent/mu/z<d>`), none pooling all latents."""
    events = run_events(cvae_run)
    histograms = set(events.Tags()["histograms"])
    assert histograms == {f"latent/{name}/z{d}" for name in ("mu", "logvar") for d in range(8)}, histograms
    last = [events.Histograms(f"latent/mu/z{d}")[-1].histogram_value for d in range(8)]
    assert len({h.num for h in last}) == 1 and len({round(h.sum, 3) for h in last}) == 8  # one batch, a latent each


def test_a_single_run_has_its_hparams_session_and_experiment(cvae_run):
    """The run's hyper-parameters as HParams values (its whole config's settings: memory and times are metrics),
    headline metrics first."""
    from tensorboard.plugins.hparams import metadata

    content = run_events(cvae_run).PluginTagToContent("hparams")
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["model"].string_value == "cvae" and start.hparams["model.latent_dim"].string_value == "8"
    assert "data.batch_size" in start.hparams and "seed" in start.hparams and "threads" not in start.hparams
    assert not [name for name in start.hparams if "/" in name]
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics[:4] == ["test/nelbo", "test/nll_iwae", "test/fid", "test/cond_accuracy"] and "mem/peak_mb" in metrics


def test_traversals_follow_the_cvae_per_dimension_kl(cvae_run, data_dir):
    """The default CVAE (mixture prior): its traversal rows are its latents by decreasing per-dimension KL."""
    from vae_lab.data.datamodule import datamodule_from_checkpoint
    from vae_lab.models import load_model, read_checkpoint
    from vae_lab.viz import grids

    ckpt = cvae_run / "checkpoints" / "last.ckpt"
    model = load_model(ckpt)
    datamodule = datamodule_from_checkpoint(read_checkpoint(ckpt), str(data_dir), train_subset=None)
    datamodule.prepare_data()
    datamodule.setup("test")
    x, y = datamodule.splits["test"][torch.arange(256)]
    t = grids.traversal(model, x, y)
    kl = model.kl_per_dimension(*model.encode(x, y), y).mean(0)
    assert t.dims == kl.argsort(descending=True).tolist() and t.kl == sorted(t.kl, reverse=True)
    assert len(set(t.kl)) == model.latent_dim and len(t.labels()) == model.latent_dim


def test_generate_png_and_npy_from_checkpoint(cvae_run, tmp_path):
    ckpt = cvae_run / "checkpoints" / "last.ckpt"
    png = run_cli("vae_lab.generate", f"ckpt_path={ckpt}", "num_samples=6", "label=7", f"out={tmp_path}/s.png")
    assert png.returncode == 0, png.stderr[-2000:]
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    npy = run_cli("vae_lab.generate", f"ckpt_path={ckpt}", "num_samples=4", "mode=reconstruct",
                  f"out={tmp_path}/r.npy")
    assert npy.returncode == 0, npy.stderr[-2000:]
    images = np.load(tmp_path / "r.npy")
    assert images.shape == (8, 1, 28, 28) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1


def test_generate_lays_out_grids_that_fit_and_labels_its_traversals(cvae_run, tmp_path):
    """16 samples of one class make a 4×4 grid (no blanks); a traversal PNG names each row's latent, KL and range."""
    from PIL import Image

    ckpt = cvae_run / "checkpoints" / "last.ckpt"
    results = run_cli_cases("vae_lab.generate", [
        [f"ckpt_path={ckpt}", "label=3", "num_samples=16", f"out={tmp_path}/grid.png"],
        [f"ckpt_path={ckpt}", "mode=traverse", "label=3", "num_samples=7", f"out={tmp_path}/t.png"]])
    assert all(r.returncode == 0 for r in results), results[-1].stderr[-2000:]
    assert Image.open(tmp_path / "grid.png").size == (4 * 30 + 2, 4 * 30 + 2)  # 28-pixel images, make_grid's 2 px
    rows = Image.open(tmp_path / "t.png").text["Description"].splitlines()
    assert len(rows) == 8 and all(re.fullmatch(r"z\d  KL \d+\.\d\d  z∈\[-?\d+\.\d, -?\d+\.\d\]", r) for r in rows), rows


def test_tiny_multirun(tiny_sweep):
    records = [json.loads(p.read_text()) for p in sorted(tiny_sweep.glob("*/metrics.json"))]
    assert sorted((r["model"], r["beta"]) for r in records) == [("beta_vae", 1.0), ("beta_vae", 4.0),
                                                                  ("vae", 1.0), ("vae", 4.0)]
    # TensorBoard names a run by its folder: each job's model (its folder's) and β (what the sweep sweeps) in it
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    multiplexer = plugin_event_multiplexer.EventMultiplexer().AddRunsFromDirectory(str(tiny_sweep)).Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tiny_sweep))
    names = {run.run_name for run in provider.list_runs(context.RequestContext(), experiment_id="")}
    jobs = enumerate((m, b) for m in ("vae", "beta_vae") for b in (1, 4))
    assert names == {f"{n}_{m}_mnist/tensorboard/{m}_mnist,model.beta={b}" for n, (m, b) in jobs}, names
    # TensorBoard's HParams tab: one experiment for the sweep, in its first job's events (none in the sweep folder:
    # TensorBoard would list it as an empty run `.`); each job its session
    from tensorboard.plugins.hparams import metadata

    jobs = [run_events(job, next((job / "tensorboard").iterdir()).name).PluginTagToContent("hparams")
            for job in sorted(tiny_sweep.glob("*_*"))]
    assert all(metadata.SESSION_START_INFO_TAG in content for content in jobs)
    assert not list(tiny_sweep.glob("events.*"))
    assert [metadata.EXPERIMENT_TAG in content for content in jobs] == [True, False, False, False]
    experiment = metadata.parse_experiment_plugin_data(jobs[0][metadata.EXPERIMENT_TAG])
    # only what tells the runs apart: the model (each its own net), β; one seed, one dataset: no columns
    assert [(h.name, h.display_name, h.differs) for h in experiment.hparam_infos] == [("model", "model", True),
                                                                                      ("model.beta", "β", True)]
    session = metadata.parse_session_start_info_plugin_data(jobs[1][metadata.SESSION_START_INFO_TAG])
    assert {"model", "net", "dataset", "seed", "model.beta", "model.latent_dim"} <= set(session.hparams)  # all
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics[:3] == ["test/nelbo", "test/nll_iwae", "test/fid"] and {"mem/peak_mb", "time/train_seconds"} <= set(metrics)


def _fails_with(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for needle in needles:
        assert needle in result.stderr + result.stdout, result.stderr[-2000:]


TRAIN_BAD_INPUT = [
    (["model=gan"], ["error: In 'train': Could not find 'model/gan'; choose one of", "cvae"]),
    (["data=cifar"], ["Could not find 'data/cifar'", "fashion_mnist"]),
    (["model=beta_vae", "model.beta=-1"], ["error: model.beta=-1"]),
    (["model.latent_dim=0"], ["error: model.latent_dim=0"]),
    (["data.batch_size=0"], ["error: data.batch_size=0"]),
    (["model=beta_vae", "net.image_size=28"], ["error: net=burgess takes image sizes"]),
    (["model.beta=abc"], ["error: model.beta='abc': must be a number"]),
    (["data.batch_size=1.5"], ["error: data.batch_size=1.5: must be a whole number"]),
    (["seed=abc"], ["error: seed='abc': must be a whole number"]),
    (["data.steps_per_batch=2.5"], ["error: data.steps_per_batch=2.5: must be a whole number"]),
    (["model=beta_vae", "model.capacity_steps=0.5"], ["error: model.capacity_steps=0.5: must be a whole number"]),
    (["seed=-1"], ["error: seed=-1: must be a whole number ≥ 0"]),
    (["data.val_size=0"], ["error: data.val_size=0: must be a whole number ≥ 1"]),
    (["data.val_size=60000"], ["error: data.val_size=60000: must leave training images"]),
    (["callbacks.images.every_n_epochs=0"], ["error: callbacks.images.every_n_epochs=0: must be a whole number ≥ 1"]),
    (["model=cvae", "model.num_classes=5"], ["error: model.num_classes=5, but data=mnist has 10 classes"]),
    (["model=cvae", "data=shapes2d", "net.image_size=32"], ["error: model CVAE is conditional", "data=shapes2d"]),
    (["ckpt_path=/nonexistent/last.ckpt"], ["error: ckpt_path=/nonexistent/last.ckpt: no such checkpoint file"]),
    (["resume=true"], ["error: resume: no ", "checkpoints/last.ckpt"]),
    (["+eval.iwae_samplez=5"], ["error: unknown eval option(s) ['iwae_samplez']"]),
]


@pytest.fixture(scope="module")
def train_bad_input_runs(tmp_path_factory):
    """Every bad command line of TRAIN_BAD_INPUT, each with its own run folder, in one interpreter."""
    folders = [tmp_path_factory.mktemp("bad_input") for _ in TRAIN_BAD_INPUT]
    cases = [[*args, *FAST, f"hydra.run.dir={folder}"] for (args, _), folder in zip(TRAIN_BAD_INPUT, folders)]
    return list(zip(run_cli_cases("vae_lab.train", cases), folders))


@pytest.mark.parametrize("case", range(len(TRAIN_BAD_INPUT)), ids=[" ".join(a) for a, _ in TRAIN_BAD_INPUT])
def test_train_bad_input_gives_one_clear_line(train_bad_input_runs, case):
    result, folder = train_bad_input_runs[case]
    _fails_with(result, *TRAIN_BAD_INPUT[case][1])
    assert not (folder / "metrics.json").exists()


@pytest.mark.parametrize("epochs", [0, -2])
def test_a_run_of_no_epochs_is_refused(tmp_path, epochs):
    """max_epochs=0 would 'finish' with status ok and untrained test metrics (FAST above sets max_epochs)."""
    from vae_lab.errors import ConfigError
    from vae_lab.train import check

    with pytest.raises(ConfigError, match=f"trainer.max_epochs={epochs}: must be ≥ 1"):
        check(compose_cfg(tmp_path, f"trainer.max_epochs={epochs}"))
    check(compose_cfg(tmp_path, "trainer.max_epochs=-1", "+trainer.max_steps=10"))


def test_generate_bad_input(cvae_run, tmp_path):
    ckpt = cvae_run / "checkpoints" / "last.ckpt"
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:1000])
    cases = [([f"ckpt_path={ckpt}", "label=10", f"out={tmp_path}/x.png"], ["error: label=10: out of range"]),
             ([f"ckpt_path={tmp_path}/none.ckpt"], ["error: checkpoint not found"]),
             ([f"ckpt_path={foreign}"], ["not a vae_lab checkpoint"]),
             ([f"ckpt_path={truncated}"], ["not a readable checkpoint"]),
             ([f"ckpt_path={ckpt}", "out=x.gif"], ["error: out='x.gif'"]),
             ([f"ckpt_path={ckpt}", "num_samples=abc"], ["error: num_samples='abc': must be a whole number ≥ 1"]),
             ([f"ckpt_path={ckpt}", "temperature=-1"], ["error: temperature=-1: must be a number ≥ 0"]),
             ([], ["error: give ckpt_path, e.g. ckpt_path=RUN/checkpoints/last.ckpt"]),
             ([f"ckpt_path={ckpt}", f"out={foreign}/x.png"], [f"error: out={foreign}/x.png: cannot write there"])]
    for result, (_, needles) in zip(run_cli_cases("vae_lab.generate", [args for args, _ in cases]), cases):
        _fails_with(result, *needles)


def test_label_given_to_unconditional_model(tmp_path, data_dir):
    from tests.test_bad_input import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "vae" / "checkpoints" / "last.ckpt")  # a tiny VAE's, as training writes it
    _fails_with(run_cli("vae_lab.generate", f"ckpt_path={ckpt}", "label=3", f"out={tmp_path}/x.png"),
                "not conditional")


def test_evaluate_rewrites_metrics_of_a_checkpoint(cvae_run, tmp_path):
    out = tmp_path / "metrics.json"
    result = run_cli("vae_lab.evaluate", f"ckpt_path={cvae_run}/checkpoints/last.ckpt", f"out={out}", *EVAL_FAST,
                     "+eval.iwae_precision=bf16", "projector.images=50", f"projector.dir={tmp_path}/tb")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(out.read_text())
    for key in EVAL_KEYS + ("test/loss", "test/recon", "test/kl"):
        assert metrics.get(key) is not None, key
    assert metrics["test/nll_iwae"] <= metrics["test/loss"] + 1.0
    assert metrics["eval/iwae_precision"] == "bf16" and metrics["eval/iwae_samples"] == 4  # how it was measured
    assert "Projector" in result.stdout
    assert len(check_projector(tmp_path / "tb", 50, 8, 28)) == 50  # the full test set's first 50


def test_evaluate_rejects_unknown_options(cvae_run):
    ckpt = f"ckpt_path={cvae_run}/checkpoints/last.ckpt"
    cases = [(["+eval.iwea_samples=5"], ["unknown eval option", "iwae_samples"]),
             (["+eval.iwae_samples=abc"], ["error: eval.iwae_samples='abc': must be a whole number ≥ 1"]),
             (["+eval.iwae_precision=fp16"], ["error: eval.iwae_precision='fp16': choose one of ['bf16', 'fp32']"]),
             (["precision=bogus"], ["error: precision='bogus':", "bf16-mixed"]),
             (["accelerator=tpu"], ["error: accelerator='tpu': choose one of ('auto', 'cpu', 'gpu')"]),
             ([f"out={cvae_run}/metrics.json/m.json"], [f"error: out={cvae_run}/metrics.json/m.json: cannot write"])]
    if not torch.cuda.is_available():
        cases.append((["accelerator=gpu"], ["error: accelerator=gpu: this machine has no CUDA GPU"]))
    for result, (_, needles) in zip(run_cli_cases("vae_lab.evaluate", [[ckpt, *args] for args, _ in cases]), cases):
        _fails_with(result, *needles)
    _fails_with(run_cli("vae_lab.evaluate"), "error: give ckpt_path, e.g. ckpt_path=RUN/checkpoints/last.ckpt")


def test_non_finite_loss_stops_with_a_clear_message_and_failed_status(tmp_path, data_dir):
    result = run_cli("vae_lab.train", "net=mlp", "model.lr=1e30", *FAST, f"hydra.run.dir={tmp_path}")
    _fails_with(result, "error: non-finite training loss at step", "recon=", "no checkpoint was written before it")
    assert "last good checkpoint" not in result.stderr  # there is none yet
    assert "error: non-finite training loss at step" in (tmp_path / "train.log").read_text()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "non-finite" in metrics["reason"] and metrics["model"] == "vae"


def test_a_multirun_goes_on_past_a_failed_job_and_ends_naming_it(tmp_path, data_dir):
    """A diverging job and one refused before training: the sweep goes on, each job's metrics.json says why, and
    the sweep ends with one line per failed job and exit status 1, without tracebacks (both are the user's to fix)."""
    result = run_cli("vae_lab.train", "-m", "net=mlp", "model.lr=1e30,1e-3,-1", *FAST, f"hydra.sweep.dir={tmp_path}")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    records = {p.parent.name[0]: json.loads(p.read_text()) for p in tmp_path.glob("*/metrics.json")}
    assert {k: r["status"] for k, r in records.items()} == {"0": "failed", "1": "ok", "2": "failed"}
    assert records["2"]["reason"] == "ConfigError: model.lr=-1: must be a number > 0"
    assert "2 of 3 jobs failed:" in output and "Traceback" not in output
    assert f"{tmp_path / '2_vae_mnist'}: ConfigError: model.lr=-1: must be a number > 0" in output


def test_killed_run_resumes_to_the_same_number_of_epochs(tmp_path, data_dir):
    import signal
    import subprocess
    import sys
    import time

    args = ["net=mlp", "trainer.max_epochs=3", "+trainer.limit_train_batches=40", "trainer.enable_progress_bar=false",
            "+trainer.limit_val_batches=2", "data.train_subset=6000", "eval.enabled=false", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.Popen([sys.executable, "-m", "vae_lab.train", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = tmp_path / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (tmp_path / "metrics.json").exists(), "killed after the first checkpoint"
    resumed = run_cli("vae_lab.train", *args, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["status"] == "ok"
    assert all(metrics[k] is not None for k in ("test/loss", "test/recon", "test/kl", "time/train_seconds"))


def test_a_job_that_fails_in_evaluation_leaves_a_failed_record_and_the_sweep_goes_on(tmp_path, data_dir):
    """Any error after training (here an unwritable classifier cache) is recorded in the job's metrics.json."""
    fast = [o for o in FAST if "classifier.cache_dir" not in o]
    caches = f"/dev/null/cache,{CLASSIFIER_CACHE}"
    result = run_cli("vae_lab.train", "-m", "net=mlp", *fast, f"++eval.classifier.cache_dir={caches}",
                     f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 1, result.stderr[-3000:]  # one job failed (the sweep says which, and exits 1)
    records = sorted((json.loads(p.read_text()) for p in tmp_path.glob("*/metrics.json")), key=lambda r: r["status"])
    assert [r["status"] for r in records] == ["failed", "ok"]
    assert records[0]["reason"].startswith(("NotADirectoryError", "FileNotFoundError")) and records[0]["model"] == "vae"
    assert "this job failed, the sweep goes on" in result.stdout + result.stderr
