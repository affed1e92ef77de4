"""`python -m vae_lab.report`: tables, failures and figures from fake run folders, one real tiny sweep, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, FAST, run_cli, run_cli_cases
from vae_lab.cli import positional_dirs
from vae_lab.report import report

PNG = b"\x89PNG"


def _run(root, name, **fields):
    """A finished run folder with a metrics.json like the trainer's."""
    folder = root / name
    (folder / ".hydra").mkdir(parents=True)
    record = {"model": "vae", "net": "burgess", "dataset": "mnist", "beta": 1.0, "capacity_max": 0.0,
              "latent_dim": 10, "image_size": 64, "seed": 0, "epochs": 2, "params": 1000, "status": "ok",
              "test/loss": 100.0, "test/recon": 80.0, "test/kl": 20.0, "time/train_seconds": 30.0,
              "time/train_images_per_second": 5000.0, "time/epoch_seconds": 15.0}
    record.update(fields)
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder


VAE_LOSS = [100.0, 101.0, 103.0]
BETA4_LOSS = [110.0, 114.0]


@pytest.fixture
def runs(tmp_path):
    """Two seeded groups, a β sweep, a CVAE latent sweep, and three broken runs."""
    root = tmp_path / "sweep"
    for seed, loss in enumerate(VAE_LOSS):
        _run(root, f"{seed}_vae", seed=seed, **{"test/loss": loss, "test/fid": None if seed == 2 else 40.0 + seed})
    for seed, loss in enumerate(BETA4_LOSS):
        _run(root, f"{3 + seed}_beta4", model="beta_vae", beta=4, seed=seed,
             **{"test/loss": loss, "test/active_units": 5.0 + seed, "test/probe_accuracy": 0.8})
    _run(root, "5_beta1", model="beta_vae", beta=1.0, **{"test/active_units": 9.0, "test/probe_accuracy": 0.9})
    for i, dim in enumerate((2, 16)):
        _run(root, f"{6 + i}_cvae", model="cvae", net="seed_conv", latent_dim=dim,
             **{"test/loss": 90.0 - dim, "test/cond_accuracy": 0.7 + dim / 100})
    _run(root, "8_failed", status="failed", reason="loss became NaN at step 12")
    (root / "9_unfinished" / ".hydra").mkdir(parents=True)
    (root / "nested" / "10_corrupt").mkdir(parents=True)
    (root / "nested" / "10_corrupt" / "metrics.json").write_text('{"model": "vae", ')
    return root


def _cfg(*dirs, samples=True):
    cfg = OmegaConf.load(CONF / "report.yaml")
    cfg.dirs, cfg.samples = [str(d) for d in dirs], samples
    return cfg


def _csv_rows(path):
    with open(path, newline="") as f:
        return {(r["model"], float(r["beta"]), int(r["latent_dim"])): r for r in csv.DictReader(f)}


def test_csv_means_stds_and_counts(runs):
    summary = report(_cfg(runs))
    assert (summary["groups"], summary["runs"], summary["failures"]) == (5, 8, 3)
    rows = _csv_rows(runs / "report.csv")
    assert len(rows) == 5
    vae = rows[("vae", 1.0, 10)]
    assert vae["n"] == "3" and vae["net"] == "burgess" and vae["dataset"] == "mnist"
    assert float(vae["test/loss_mean"]) == pytest.approx(np.mean(VAE_LOSS))
    assert float(vae["test/loss_std"]) == pytest.approx(np.std(VAE_LOSS, ddof=1))
    assert float(vae["test/fid_mean"]) == pytest.approx(40.5)  # the null FID is left out
    assert float(vae["test/recon_std"]) == 0.0
    beta4 = rows[("beta_vae", 4.0, 10)]  # beta given as the integer 4 still groups as 4.0
    assert beta4["n"] == "2"
    assert float(beta4["test/loss_std"]) == pytest.approx(np.std(BETA4_LOSS, ddof=1))
    assert float(beta4["test/active_units_mean"]) == pytest.approx(5.5)
    assert beta4["test/fid_mean"] == beta4["test/fid_std"] == ""  # not measured in this group
    single = rows[("beta_vae", 1.0, 10)]
    assert single["n"] == "1" and float(single["test/loss_std"]) == 0.0
    with open(runs / "report.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[:6] == ["model", "net", "dataset", "beta", "latent_dim", "n"]  # capacity_max: the same in every run
    assert header[6:8] == ["test/loss_mean", "test/loss_std"]


def test_markdown_table_failures_and_figures(runs):
    report(_cfg(runs))
    md = (runs / "report.md").read_text()
    assert md.index("## Headline") < md.index("## All metrics")  # the columns a reader compares, then all
    headline, full = (next(line for line in part.splitlines() if line.startswith("| model"))
                      for part in md.split("## All metrics"))
    assert [c.strip() for c in headline.strip("|").split("|")] == ["model", "net", "dataset", "β", "z", "n",
                                                                   "loss", "FID", "cond acc", "active units",
                                                                   "train s (wall clock)"]
    columns = [c.strip() for c in full.strip("|").split("|")]
    assert columns[:6] == ["model", "net", "dataset", "β", "z", "n"]
    order = ["loss", "recon", "KL", "active units", "FID", "cond acc", "probe acc", "train s (wall clock)",
             "images/s (wall clock)", "epoch s (wall clock)"]
    assert [c for c in columns if c in order] == order
    assert not [c for c in columns if "/" in c and c not in ("images/s", "images/s (wall clock)")]  # one naming scheme: no raw metric keys
    assert "| 101.3 ± 1.5 |" in md  # the VAE's loss over its three seeds
    assert md.count("\n| ") == 2 * (1 + 5)  # two tables: header + one row per group
    failed = md.split("## Failed runs (3)")[1]
    for name, reason in (("8_failed", "loss became NaN at step 12"), ("9_unfinished", "no metrics.json"),
                         ("10_corrupt", "unreadable metrics.json")):
        line = next(line for line in failed.splitlines() if name in line)
        assert reason in line
    for name in ("quality_vs_time", "sweep_beta", "sweep_latent_dim"):
        assert (runs / "figures" / f"{name}.png").read_bytes()[:4] == PNG
        assert f"](figures/{name}.png)" in md
    assert "checkpoints/last.ckpt" in md  # the samples panels are left out, and the report says why
    assert not list(runs.glob("figures/samples_*.png"))


def test_no_failures_and_only_failures(tmp_path):
    good = tmp_path / "good"
    _run(good, "0_vae")
    report(_cfg(good))
    assert "None: every run finished" in (good / "report.md").read_text()
    assert not list(good.glob("figures/sweep_*.png"))  # no sweep, no figure against a setting
    bad = tmp_path / "bad"
    _run(bad, "0_vae", status="failed")
    summary = report(_cfg(bad))
    assert (summary["groups"], summary["failures"]) == (0, 1)
    md = (bad / "report.md").read_text()
    assert "nothing to tabulate" in md and "0_vae" in md


def test_positional_dirs_shim():
    assert positional_dirs(["a", "b c/it's", "samples=false", "-cn", "report"]) == [
        "samples=false", "-cn", "report", "dirs=['a','b c/it\\'s']"]
    assert positional_dirs(["dirs=[x]"]) == ["dirs=[x]"]


def test_cli_several_dirs_writes_into_the_first(runs, tmp_path):
    other = tmp_path / "other"
    _run(other, "0_vae", seed=7, **{"test/loss": 99.0})
    result = run_cli("vae_lab.report", str(runs), str(other), "samples=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "5 groups from 9 finished runs; 3 failed" in result.stdout
    assert f"wrote {runs}/report.md" in result.stdout
    assert _csv_rows(runs / "report.csv")[("vae", 1.0, 10)]["n"] == "4"
    assert not (other / "report.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "sweep"]  # Hydra wrote nothing here


REPORT_BAD_INPUT = [(["missing"], "missing: no such folder"), (["empty"], "empty: holds no runs"),
                    ([], "no folder given")]


@pytest.fixture(scope="module")
def report_bad_input_runs(tmp_path_factory):
    """Every bad command line of REPORT_BAD_INPUT, run in one folder (holding only an empty one) by one interpreter."""
    folder = tmp_path_factory.mktemp("report_bad_input")
    (folder / "empty" / "sub").mkdir(parents=True)
    return run_cli_cases("vae_lab.report", [args for args, _ in REPORT_BAD_INPUT], cwd=folder), folder


@pytest.mark.parametrize("case", range(len(REPORT_BAD_INPUT)), ids=[" ".join(a) or "none" for a, _ in REPORT_BAD_INPUT])
def test_bad_input_gives_one_error_line(report_bad_input_runs, case):
    results, folder = report_bad_input_runs
    result, needle = results[case], REPORT_BAD_INPUT[case][1]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == ["empty", "empty/sub"]


TINY_TIMING = ["timing_options.warmup_steps=1", "timing_options.steps=2", "timing_options.repeats=2",
               "timing_options.sample_images=40", "timing_options.batch_size=20", "timing_options.eval_images=40"]


def test_the_compare_sweep_runs_through_the_launcher_and_its_report_times_every_arm(tmp_path, data_dir):
    """`+experiment=compare`'s default launcher (2 jobs × 1 thread), sweep.json's wall time, a tiny timing pass of
    its own (timing.json: an arm per report group), the report's timing columns and time section, the samples
    figure."""
    sweep = tmp_path / "sweep"
    trained = run_cli("vae_lab.train", "-m", "+experiment=compare", "+arm=cvae,beta_4", "data=mnist", "seed=0",
                      *FAST, f"hydra.sweep.dir={sweep}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in trained.stdout + trained.stderr
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert [r["threads"] for r in records] == [1, 1]
    wall = json.loads((sweep / "sweep.json").read_text())
    assert (wall["n_jobs"], wall["threads"]) == (2, 1) and wall["wall_seconds"] > wall["launch_seconds"] > 0
    timed = run_cli("vae_lab.timing_pass", str(sweep), *TINY_TIMING)
    assert timed.returncode == 0, timed.stderr[-3000:]
    assert "GPU available" not in timed.stdout + timed.stderr  # no Lightning notices for each window
    result = run_cli("vae_lab.report", str(sweep))
    assert result.returncode == 0, result.stderr[-3000:]
    timing = json.loads((sweep / "timing.json").read_text())
    assert sorted(arm["group"]["model"] for arm in timing["arms"]) == ["beta_vae", "cvae"]
    for arm in timing["arms"]:
        assert all(len(arm["windows"][w]) == 2 and min(arm["windows"][w]) > 0 for w in ("train", "sample", "eval"))
        rate = arm["train_images_per_second"]
        assert rate["min"] <= rate["median"] <= rate["max"]
        assert arm["epoch_seconds"]["median"] == pytest.approx(arm["train_images"] / rate["median"])
    md = (sweep / "report.md").read_text()
    assert "train img/s (timing pass)" in md and "images/s (wall clock)" in md
    headline = md.split("## Headline")[1].split("## All metrics")[0]  # its time columns: the timing pass's
    assert "epoch s (timing pass)" in headline and "train img/s (timing pass)" in headline
    assert "(wall clock)" not in headline
    assert "## Where the time went" in md and "Sweep wall clock:" in md
    assert "time/iwae_seconds" not in md.split("## Failed runs")[0]  # a part: in the time section only
    assert "](figures/samples_mnist.png)" in md and "## Failed runs (0)" in md
    assert (sweep / "figures" / "quality_vs_time.png").read_bytes()[:4] == PNG
    with open(sweep / "report.csv", newline="") as f:
        assert sorted(r["model"] for r in csv.DictReader(f)) == ["beta_vae", "cvae"]


def test_the_time_section_adds_up_each_part_over_the_runs(tmp_path):
    root = tmp_path / "sweep"
    for seed in range(2):
        _run(root, f"{seed}_vae", seed=seed, **{"time/startup_seconds": 2.0, "time/train_seconds": 30.0,
                                                "time/iwae_seconds": 5.0 + seed, "time/total_seconds": 40.0})
    (root / "sweep.json").write_text(json.dumps({"wall_seconds": 50.0, "launch_seconds": 1.0, "n_jobs": 2,
                                                 "threads": 1, "launcher": "JoblibLauncher", "cpus": 2}))
    report(_cfg(root, samples=False))
    md = (root / "report.md").read_text()
    section = md.split("## Where the time went")[1]
    assert "Sweep wall clock: **50 s**" in section and "1.60 jobs busy on average" in section
    assert "| process start-up (interpreter, imports, Hydra) | 4.0 | 5.0% | 2.0 |" in section
    assert "| evaluation: IWAE bound | 11.0 | 13.8% | 5.5 |" in section
    assert "| other (not in a part) | 5.0 | 6.2% | 2.5 |" in section and "| **all** | 80.0 | 100% | 40.0 |" in section
    assert "startup" not in md.split("## Failed runs")[0]  # the parts stay out of the results table


def test_columns_option_and_single_runs_show_no_spread(runs, tmp_path):
    from tests.conftest import compose_cfg
    from vae_lab.report import report

    report(compose_cfg(tmp_path, f"dirs=[{runs}]", "samples=false", "columns=[test/loss]", config="report"))
    full = (runs / "report.md").read_text().split("## All metrics")[1]
    table = [line for line in full.splitlines() if line.startswith("| ")]
    assert table[0].split(" | ")[-1] == "loss |"
    singles = [line for line in table[1:] if line.split(" | ")[5] == "1"]
    assert singles and all("±" not in line for line in singles)


def test_disentanglement_columns_name_their_property_and_plot_against_beta(tmp_path):
    root = tmp_path / "sweep"
    for seed in range(2):
        for beta, mig in ((1.0, 0.05), (4.0, 0.2), (16.0, 0.15)):
            _run(root, f"b{beta:g}_s{seed}", model="beta_vae", dataset="shapes2d", beta=beta, seed=seed,
                 **{"test/mig": mig + seed / 100, "test/dci_disentanglement": mig * 2, "test/dci_completeness": 0.3})
    report(_cfg(root, samples=False))
    md = (root / "report.md").read_text()
    assert "mig (compactness)" in md and "dci_disentanglement (modularity)" in md
    assert "| 0.2050 ± 0.0071 |" in md   # MIG at β = 4 over its two seeds
    assert (root / "figures" / "disentanglement_beta.png").read_bytes()[:4] == PNG


def test_cells_round_float_noise_around_zero_to_zero():
    from vae_lab.report import _fmt
    assert _fmt(-2.22e-16, 0.0) == "0.000 ± 0.000" and _fmt(2.22e-16, None) == "0.000"
    assert _fmt(0.2065, 0.0669) == "0.2065 ± 0.0669" and _fmt(1e-5, 2e-6) == "0.00001000 ± 0.00000200"


def test_runs_that_differ_beyond_the_main_keys_are_separate_rows_with_that_column(tmp_path):
    """+experiment=cvae_design sweeps the prior's components: K=1 and K=10 must not be averaged as seeds."""
    root = tmp_path / "design"
    for seed in range(2):
        for components, loss in ((1, 240.0), (10, 236.0)):
            _run(root, f"K{components}_s{seed}", model="cvae", prior_components=components, learned_prior=True,
                 lr=2e-3, seed=seed, **{"test/loss": loss + seed})
    summary = report(_cfg(root, samples=False))
    assert (summary["groups"], summary["runs"]) == (2, 4)
    md = (root / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    assert [c.strip() for c in header.strip("|").split("|")][:5] == ["model", "net", "dataset", "K", "n"]
    assert "| mnist | 1 | 2 | 240.5 ± 0.7 |" in md and "| mnist | 10 | 2 | 236.5 ± 0.7 |" in md  # K, n, loss
    with open(root / "report.csv", newline="") as f:
        assert next(csv.reader(f))[:5] == ["model", "net", "dataset", "prior_components", "n"]


def test_a_column_no_run_has_is_an_error_before_anything_is_written(runs):
    from vae_lab.errors import ConfigError

    cfg = _cfg(runs, samples=False)
    cfg.columns = ["test/loss", "test/bogus"]
    with pytest.raises(ConfigError, match=r"no run has \['test/bogus'\]"):
        report(cfg)
    assert not (runs / "report.md").exists() and not (runs / "figures").exists()


def test_figure_lines_never_join_groups_that_differ_in_another_setting():
    """CVAE latent sizes with and without the learned prior: two lines named by it, not one zigzag."""
    from vae_lab.viz.plots import _line_namer, _series

    def row(z, learned, lr=2e-3):
        return {"model": "cvae", "net": "mlp", "dataset": "mnist", "n": 1, "seeds": [0], "runs": [], "mean": {},
                "std": {}, "keys": {"model.latent_dim": z, "model.learned_prior": learned, "model.lr": lr}}

    rows = [row(z, learned) for z in (2, 8) for learned in (True, False)] + [row(4, None, lr=None)]
    lines = _series(rows, "model.latent_dim")
    assert len(lines) == 2 and all([r["keys"]["model.latent_dim"] for r in line] == [2, 8] for line in lines.values())
    name = _line_namer(lines, "model.latent_dim")
    assert sorted(name(line[0]) for line in lines.values()) == ["mnist learned prior=False", "mnist learned prior=True"]
    with_none = _series(rows + [row(16, None, lr=None)], "model.latent_dim")
    assert "lr=None" in _line_namer(with_none, "model.latent_dim")(row(4, None, lr=None))


def test_a_timing_pass_is_compared_with_the_one_before_it():
    from vae_lab.results.runs import agreement_line
    from vae_lab.timing_pass import agreement

    def arms(**rates):
        return [{"name": name, "train_images_per_second": {"median": rate}} for name, rate in rates.items()]

    close = agreement(arms(a=100.0, b=200.0, c=50.0), arms(a=105.0, b=190.0, c=50.0))
    assert close["max_difference"] == pytest.approx(0.05) and close["same_ranking"] and close["arms"] == 3
    assert "within 5.0%" in agreement_line(close) and "the same ranking" in agreement_line(close)
    swapped = agreement(arms(a=100.0, b=200.0), arms(a=210.0, b=190.0))
    assert swapped["max_difference"] == pytest.approx(1.1) and not swapped["same_ranking"]
    assert swapped["reversals"] == [["a", "b"]] and "a against b" in agreement_line(swapped)

    def spread(**rates):  # median, min, max
        return [{"name": name, "train_images_per_second": dict(zip(("median", "min", "max"), r, strict=True))}
                for name, r in rates.items()]

    tied = agreement(spread(a=(100, 95, 104), b=(102, 97, 106), c=(50, 48, 52)),
                     spread(a=(103, 99, 105), b=(101, 96, 104), c=(51, 49, 53)))  # a, b: one speed
    assert tied["same_ranking"] and tied["reversals"] == [] and "count as tied" in agreement_line(tied)
    told_apart = agreement(spread(a=(100, 99, 101), b=(110, 108, 112)), spread(a=(105, 95, 115), b=(104, 96, 114)))
    assert not told_apart["same_ranking"]  # the first pass tells them apart, the second orders them the other way


def test_every_report_figure_axis_names_what_it_plots(tmp_path, monkeypatch):
    """Each axis's label is the LABELS entry of the metric whose values it draws (−ELBO is test/nelbo, not the
    β-weighted loss); the x axes are the settings that tell the groups apart, whatever they are."""
    from vae_lab.viz import plots

    def row(model, beta, latent, dataset="mnist", **extra):
        mean = {"test/loss": 100 + 10 * beta + latent, "test/nelbo": 90 + beta + latent, "test/recon": 80.0 + beta,
                "test/kl": 20.0 - beta, "test/fid": 40.0 + beta, "test/active_units": 10 - beta,
                "test/probe_accuracy": 0.5 + beta / 100, "test/cond_accuracy": 0.6 + latent / 100,
                "time/train_seconds": 30.0 * beta + latent, "time/epoch_seconds": 3.0 * beta + latent,
                "test/mig": 0.1 * beta, **extra}
        return {"model": model, "net": "burgess", "dataset": dataset, "keys": {"model.beta": beta,
                "model.latent_dim": latent}, "n": 1, "mean": mean, "std": dict.fromkeys(mean, 0.0)}

    rows = [row("beta_vae", b, 10) for b in (1.0, 4.0)] + [row("cvae", 1.0, z) for z in (2, 16)]
    figures = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.setdefault(path.stem, fig) is not None)
    assert plots.quality_vs_time(rows, tmp_path / "quality_vs_time.png")
    written = plots.sweep_figures(rows, tmp_path)
    assert [p.stem for p, _ in written] == ["sweep_model_beta", "disentanglement_model_beta",
                                            "sweep_model_latent_dim", "disentanglement_model_latent_dim"]
    assert written[0][1] == "Quality against β (mean ± std over seeds)"
    latent = figures["sweep_model_latent_dim"].axes
    assert {ax.get_xlabel() for ax in latent} == {"z"} and latent[-1].get_ylabel() == plots.LABELS["test/cond_accuracy"]
    by_label = {label: metric for metric, label in plots.LABELS.items()}
    for name, fig in figures.items():
        for ax in fig.axes:
            if ax.get_ylabel() == plots.ACCURACY:  # two metrics on one axis, each row's own (tested in _quality)
                continue
            metric = by_label[ax.get_ylabel()]
            drawn = {float(y) for line in ax.lines for y in line.get_ydata()}
            assert drawn and drawn <= {r["mean"][metric] for r in rows}, (name, ax.get_ylabel())
    assert figures["quality_vs_time"].axes[0].get_ylabel() == "test −ELBO (nats)"


def test_the_study_figure_has_a_bar_per_objective_for_each_metric(tmp_path, monkeypatch):
    from vae_lab.viz import plots

    def row(model, mig, **keys):
        mean = {"test/mig": mig, "test/dci_disentanglement": mig + 0.1, "test/udr": mig / 2}
        return {"model": model, "net": "burgess", "dataset": "shapes2d", "n": 2, "mean": mean,
                "std": dict.fromkeys(mean, 0.01), "keys": {f"model.{k}": v for k, v in keys.items()}}

    rows = [row("beta_vae", 0.2, beta=4.0), row("beta_vae", 0.1, capacity_max=25.0, gamma=1000.0),
            row("factor_vae", 0.3, gamma=30.0), row("dip_vae", 0.25, variant="ii", lambda_od=5.0)]
    figures = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.setdefault(path.stem, fig) is not None)
    assert plots.disentanglement_by_objective(rows, tmp_path / "objectives.png")
    axes = [ax for ax in figures["objectives"].axes if ax.axison]
    assert [ax.get_xlabel() for ax in axes] == [plots.LABELS[m] for m in ("test/mig", "test/dci_disentanglement",
                                                                          "test/udr")]
    names = [t.get_text() for t in axes[0].get_yticklabels()]
    assert names == ["beta_vae C=25 γ=1000", "beta_vae β=4", "dip_vae variant=ii λ_od=5", "factor_vae γ=30"]
    widths = [bar.get_width() for bar in axes[0].patches]
    assert widths == [pytest.approx(v) for v in (0.1, 0.2, 0.25, 0.3)]  # each bar its group's mean MIG
    assert not plots.disentanglement_by_objective(rows[:2], tmp_path / "one_model.png")  # one objective: no figure
