"""vae_lab.results: the group rule (runs whose composed configs differ only in the seed) on run folders with a
.hydra/config.yaml, as the report, the timing pass, TensorBoard's HParams tab and the explorer use it."""

from __future__ import annotations

import csv
import json

import yaml

from tests.conftest import CONF, FAST, run_cli
from vae_lab.results.groups import SAME_EXPERIMENT, dropped, shown_keys
from vae_lab.results.runs import collect, group_runs


def _config(seed=0, batch_size=64, weight_decay=0.0, threads=None, **model):
    """A composed config as Hydra saves it (unresolved: `data.seed` is `${seed}`)."""
    return {"seed": seed, "threads": threads, "tags": [], "ckpt_path": None,
            "paths": {"output_dir": "${hydra:runtime.output_dir}"},
            "model": {"_target_": "vae_lab.models.vae.VAE", "latent_dim": 10, "lr": 1e-3,
                      "weight_decay": weight_decay, **model},
            "net": {"_target_": "vae_lab.nets.mlp.MLP", "hidden": [512, 512]},
            "data": {"name": "mnist", "batch_size": batch_size, "seed": "${seed}"},
            "trainer": {"max_epochs": 1, "enable_progress_bar": True}}


def _run(root, name, cfg, loss=100.0):
    folder = root / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    record = {"model": "vae", "net": "mlp", "dataset": "mnist", "seed": cfg["seed"], "status": "ok",
              "test/loss": loss}
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder


def _groups(root):
    runs, failures = collect([root])
    assert not failures
    return group_runs(runs)


def _shown(groups):
    return shown_keys((g.first.identity, g.first.settings) for g in groups)


def test_a_sweep_over_batch_size_and_weight_decay_is_four_groups_with_those_columns(tmp_path):
    for i, (batch, decay) in enumerate((b, d) for b in (64, 128) for d in (0.0, 0.01)):
        _run(tmp_path, f"{i}", _config(batch_size=batch, weight_decay=decay))
    groups = _groups(tmp_path)
    assert [len(g.runs) for g in groups] == [1, 1, 1, 1]
    assert _shown(groups) == ["data.batch_size", "model.weight_decay"]


def test_two_seeds_of_one_config_are_one_group_whatever_else_never_tells_runs_apart(tmp_path):
    _run(tmp_path, "a", _config(seed=0, threads=1))
    b = _config(seed=1, threads=2)
    b["paths"]["output_dir"], b["trainer"]["enable_progress_bar"], b["tags"] = "/elsewhere", False, ["x"]
    _run(tmp_path, "b", b)
    groups = _groups(tmp_path)
    assert len(groups) == 1 and [r.record["seed"] for r in groups[0].runs] == [0, 1]
    assert _shown(groups) == []


def test_two_runs_of_one_config_and_seed_are_not_averaged_as_seeds(tmp_path):
    _run(tmp_path, "a", _config(seed=0), loss=100.0)
    _run(tmp_path, "b", _config(seed=0), loss=110.0)
    _run(tmp_path, "c", _config(seed=1), loss=120.0)
    groups = _groups(tmp_path)
    assert [(g.repeat, [r.path.name for r in g.runs]) for g in groups] == [(0, ["a", "c"]), (1, ["b"])]
    from omegaconf import OmegaConf

    from vae_lab.report import report

    cfg = OmegaConf.load(CONF / "report.yaml")
    cfg.dirs, cfg.samples = [str(tmp_path)], False
    assert report(cfg)["groups"] == 2
    with open(tmp_path / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["repeat"], r["n"], float(r["test/loss_mean"])) for r in rows] == [("0", "2", 110.0), ("1", "1", 110.0)]
    assert "| repeat |" in (tmp_path / "report.md").read_text()


def test_a_key_only_one_run_has_separates_it_and_shows(tmp_path):
    _run(tmp_path, "a", _config())
    _run(tmp_path, "b", _config(seed=1))
    _run(tmp_path, "new", _config(warmup_steps=100))  # a new objective's own hyper-parameter, say
    groups = _groups(tmp_path)
    assert sorted(len(g.runs) for g in groups) == [1, 2]
    assert _shown(groups) == ["model.warmup_steps"]


def test_keys_that_follow_the_model_net_or_dataset_need_no_column(tmp_path):
    """A beta_vae's β beside a vae without one: the model column says it; two β of beta_vae: a column."""
    _run(tmp_path, "vae", _config())
    for beta in (1.0, 4.0):
        folder = _run(tmp_path, f"beta{beta:g}", _config(beta=beta))
        record = json.loads((folder / "metrics.json").read_text())
        (folder / "metrics.json").write_text(json.dumps({**record, "model": "beta_vae"}))
    groups = _groups(tmp_path)
    assert len(groups) == 3 and _shown(groups) == ["model.beta"]
    assert not _shown(groups[:1] + groups[2:])  # one beta_vae: its β follows the model


def test_the_dropped_keys_and_what_falls_under_them():
    assert all(SAME_EXPERIMENT.values())  # each says why
    assert dropped("seed") and dropped("data.seed") and dropped("callbacks.images.every_n_epochs")
    assert not dropped("data.batch_size") and not dropped("trainer.max_epochs") and not dropped("model.seed_conv")


def test_hparams_and_the_explorer_name_runs_by_the_same_rule(tmp_path):
    from vae_lab.viz.tensorboard import experiment_summary

    for i, decay in enumerate((0.0, 0.01)):
        _run(tmp_path, f"{i}", _config(weight_decay=decay))
    runs, _ = collect([tmp_path])
    summary = experiment_summary([(r.record, r.settings) for r in runs])
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = summary.value[0].metadata.plugin_data.content
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    infos = {h.name: h for h in experiment.hparam_infos}
    assert list(infos) == ["model.weight_decay"] and infos["model.weight_decay"].differs  # only what differs


def test_a_real_sweep_over_batch_size_and_weight_decay_reports_four_rows(tmp_path, data_dir):
    """The issue's sweep, all seed 0: four rows told apart by batch size and weight decay, the same in the HParams
    tab's experiment and the timing pass's arms."""
    sweep = tmp_path / "sweep"
    trained = run_cli("vae_lab.train", "-m", "model=vae", "data.batch_size=64,128", "model.weight_decay=0,0.01",
                      *FAST, "eval.enabled=false", "callbacks.projector.images=0", f"hydra.sweep.dir={sweep}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = run_cli("vae_lab.report", str(sweep), "samples=false", "udr_points=0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "report: 4 groups from 4 finished runs" in result.stdout
    with open(sweep / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["data.batch_size"], r["model.weight_decay"], r["n"]) for r in rows) == [
        ("128", "0", "1"), ("128", "0.01", "1"), ("64", "0", "1"), ("64", "0.01", "1")]  # as given
    header = next(line for line in (sweep / "report.md").read_text().splitlines() if line.startswith("| model"))
    assert "| data.batch_size | model.weight_decay | n |" in header
    from vae_lab.timing_pass import timed_arms

    arms = timed_arms([str(sweep)])
    assert sorted((a[1]["data.batch_size"], a[1]["model.weight_decay"]) for a in arms) == [
        (64, 0), (64, 0.01), (128, 0), (128, 0.01)]
    assert list(sweep.glob("0_*/tensorboard/*/*.hparams"))  # the sweep's HParams experiment, in its first run


def test_groups_are_in_order_of_their_settings_numbers_by_value(tmp_path):
    for beta in (16.0, 4.0, 1.0):
        _run(tmp_path, f"b{beta:g}", _config(beta=beta))
    assert [g.first.settings["model.beta"] for g in _groups(tmp_path)] == [1.0, 4.0, 16.0]


def test_a_group_s_first_run_is_its_lowest_seed(tmp_path):
    for seed in (10, 2):
        _run(tmp_path, f"s{seed}", _config(seed=seed))
    assert [r.record["seed"] for r in _groups(tmp_path)[0].runs] == [2, 10]
