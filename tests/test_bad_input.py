"""Bad input to every entry point, refused in one line before any work (docs/reliability.md, "Bad input").

Each table runs its command lines in one interpreter (`run_cli_cases`); the checkpoints are written here, tiny, with
the fields vae_lab's own hold, so no training is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import torch

from tests.conftest import DATA, run_cli_cases

MLP = {"_target_": "vae_lab.nets.mlp.MLPNet", "image_size": 28, "hidden": [16]}


def write_checkpoint(path, **changes):
    """A vae_lab checkpoint of a tiny MLP VAE (what load_model and a resume read), with fields changed or dropped."""
    from vae_lab.models.vae import VAE

    model = VAE(net=MLP, latent_dim=2)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                  "vae_lab_model": "vae_lab.models.vae.VAE",
                  "datamodule_hyper_parameters": {"name": "mnist", "data_dir": str(DATA)}}
    for key, value in changes.items():
        if value is None:
            checkpoint.pop(key)
        else:
            checkpoint[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def write_record(folder, **changes):
    """A finished run's metrics.json (what the report reads), with fields changed."""
    record = {"model": "vae", "net": "mlp", "dataset": "mnist", "beta": 1.0, "capacity_max": 0.0, "latent_dim": 10,
              "seed": 0, "status": "ok", "test/loss": 100.0, **changes}
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(record))  # NaN as Python's json writes it


def _make_read_only(folder):
    """Make `folder` read-only for this process: chmod for a user, a read-only tmpfs copy for root (chmod does not
    stop root); False where neither is possible."""
    if os.geteuid() != 0:
        for sub, _, _ in os.walk(folder):
            os.chmod(sub, 0o555)
        return True
    content = folder.with_name(folder.name + "_content")
    folder.rename(content)
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True,
                      check=False).returncode:
        return False
    shutil.copytree(content, folder, dirs_exist_ok=True)
    return subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True,
                          check=False).returncode == 0


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A read-only folder holding a run folder with a checkpoint (skipped where none can be made)."""
    folder = tmp_path_factory.mktemp("read_only") / "ro"
    write_checkpoint(folder / "run" / "checkpoints" / "last.ckpt")
    write_record(folder / "run")
    made = _make_read_only(folder)
    if made:
        try:
            (folder / "probe").write_text("")
            made = False
        except OSError:
            pass
    yield folder if made else None
    if os.geteuid() == 0:
        subprocess.run(["umount", str(folder)], capture_output=True, check=False)
    else:
        for sub, _, _ in os.walk(folder):
            os.chmod(sub, 0o755)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A good checkpoint and bad ones: truncated, random bytes, no hyper-parameters, an extra one, an unknown or
    foreign model class, a foreign net."""
    folder = tmp_path_factory.mktemp("checkpoints")
    good = write_checkpoint(folder / "run" / "checkpoints" / "last.ckpt")
    (folder / "truncated.ckpt").write_bytes(good.read_bytes()[:1000])
    (folder / "random.ckpt").write_bytes(os.urandom(5000))
    write_checkpoint(folder / "no_hparams.ckpt", hyper_parameters=None)
    write_checkpoint(folder / "extra_hparam.ckpt", hyper_parameters={"net": MLP, "latent_dim": 2, "bogus": 1})
    write_checkpoint(folder / "unknown_class.ckpt", vae_lab_model="vae_lab.models.vae.NoSuchVAE")
    write_checkpoint(folder / "foreign_class.ckpt", vae_lab_model="subprocess.Popen")
    write_checkpoint(folder / "foreign_net.ckpt", hyper_parameters={"net": {"_target_": "os.system", "command": "x"}})
    return folder


def _one_line(result, needle):
    """Exit status 2, no traceback, and exactly one `error:` line, holding the needle."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Error executing job" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr[-2000:]


TINY = ["net=mlp", "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", "data.train_subset=2000",
        "eval.enabled=false"]
# (arguments, the error line's words); {ck}: the checkpoints folder, {ro}: the read-only one, {tmp}: a scratch one
TRAIN = [
    (["trainer.precision=banana"], "trainer.precision='banana': must be one of 64, 32, 16, 'transformer-engine'"),
    (["trainer.devices=0"], "trainer: Lightning refuses these settings: `Trainer(devices=0)`"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs=-1 without +trainer.max_steps"),
    (["model.beta=inf"], "model.beta=inf: must be a finite number"),
    (["model.lr=nan"], "model.lr=nan: must be a finite number"),
    (["net.hidden=[0]"], "net.hidden=[0]: every layer width must be a whole number ≥ 1"),
    (["model.latent_dim=100000"], "model.latent_dim=100000: at most 1024"),
    (["model=factor_vae", "model.disc_lr=-1"], "model.disc_lr=-1: must be a number > 0"),
    (["model=factor_vae", "model.disc_hidden=0"], "model.disc_hidden=0: must be a whole number ≥ 1"),
    (["model=factor_vae", "model.gamma=-5"], "model.gamma=-5: must be a number ≥ 0"),
    (["model=beta_tcvae", "model.alpha=-1"], "model.alpha=-1: must be a number ≥ 0"),
    (["model=beta_tcvae", "model.gamma=-0.5"], "model.gamma=-0.5: must be a number ≥ 0"),
    (["model=dip_vae", "model.lambda_d=-1"], "model.lambda_d=-1: must be a number ≥ 0 or null"),
    (["model=cvae", "model.prior_components=0"], "model.prior_components=0: must be a whole number ≥ 1"),
    (["model.compile=maybe"], "model.compile='maybe': must be true or false"),
    (["+eval.iwae_samples=0"], "eval.iwae_samples=0: must be a whole number ≥ 1"),  # eval.enabled=false too
    (["+eval.bogus=1"], "unknown eval option(s) ['bogus']"),
    (["eval.enabled=maybe"], "eval.enabled='maybe': must be true or false"),
    (["ckpt_path={ck}/truncated.ckpt"], "truncated.ckpt: not a readable checkpoint"),
    (["ckpt_path={ck}/random.ckpt"], "random.ckpt: not a readable checkpoint"),
    (["ckpt_path={ck}/run/checkpoints/last.ckpt", "model=beta_vae"], "a checkpoint of VAE, but this run's model is BetaVAE"),
    (["ckpt_path={ck}/run/checkpoints/last.ckpt", "net=conv"], "a checkpoint of net MLPNet, but this run's net is ConvNet"),
    (["ckpt_path={ck}/run/checkpoints/last.ckpt"], "its weights do not fit this run's model"),
    (["ckpt_path={ck}/run/checkpoints"], "checkpoints: is a folder; give the checkpoint file in it"),
    (["data.data_dir={tmp}/data_file"], "data.data_dir: cannot make"),
    (["data.data_dir={tmp}/data_with_a_folder"], "train-images-idx3-ubyte: is a folder, not the data file"),
    (["data.data_dir={ro}/data"], "data.data_dir: cannot make"),
    (["hydra.run.dir={ro}/new_run"], "hydra.run.dir={ro}/new_run: cannot write in"),
    (["-m", "seed=0,1", "hydra.sweep.dir={ro}/sweep"], "hydra.sweep.dir={ro}/sweep: cannot write in"),
]
if not torch.cuda.is_available():
    TRAIN.append((["trainer.accelerator=gpu"], "trainer: Lightning refuses these settings: No supported gpu backend"))
GENERATE = [
    (["seed=-1"], "seed=-1: must be a whole number ≥ 0 and ≤ 4294967295"),
    (["seed=99999999999"], "seed=99999999999: must be a whole number ≥ 0 and ≤ 4294967295"),
    (["temperature=nan"], "temperature=nan: must be a finite number"),
    (["temperature=inf"], "temperature=inf: must be a finite number"),
    (["num_samples=2000000", "out={tmp}/s.npy"], "num_samples=2000000: at most 100,000 images in one .npy"),
    (["num_samples=20000"], "num_samples=20000: at most 10,000 images in one .png"),
    (["mode=traverse", "num_samples=1000"], "num_samples=1000: at most 100 steps per latent"),
    (["out={ro}/s.png"], "out={ro}/s.png: cannot write in {ro}"),
    (["ckpt_path={ck}/no_hparams.ckpt"], "no_hparams.ckpt: records no hyper-parameters"),
    (["ckpt_path={ck}/extra_hparam.ckpt"], "extra_hparam.ckpt: model.bogus: VAE has no such setting"),
    (["ckpt_path={ck}/unknown_class.ckpt"], "its model='vae_lab.models.vae.NoSuchVAE': not one of vae_lab's models"),
    (["ckpt_path={ck}/foreign_class.ckpt"], "its model='subprocess.Popen': not one of vae_lab's models"),
    (["ckpt_path={ck}/foreign_net.ckpt"], "net._target_='os.system': not one of vae_lab's nets"),
    (["ckpt_path={ck}/run/checkpoints"], "checkpoints: is a folder, not a checkpoint"),
]
EVALUATE = [
    (["ckpt_path={tmp}/half/checkpoints/last.ckpt"], "half/metrics.json: unreadable"),
    (["out={ro}/metrics.json"], "out={ro}/metrics.json: cannot write in {ro}"),
    (["ckpt_path={ro}/run/checkpoints/last.ckpt"], "out={ro}/run/metrics.json: cannot write in {ro}/run"),
]
REPORT = [
    (["{ro}"], "report.md, report.csv and figures/: cannot write in {ro}"),
    (["{tmp}/runs", "samples=maybe"], "samples='maybe': must be true or false"),
]
BENCH = [
    (["json={ro}/bench.json"], "json={ro}/bench.json: cannot write in {ro}"),
    (["overrides=[model.compile=true]", "json={ro}/bench.json"], "json={ro}/bench.json: cannot write in {ro}"),
    (["overrides=[model.bogus=1,trainer=cpu]"], "case 'cvae': Could not override 'model.bogus'"),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, checkpoints):
    """Bad data folders, and a run folder whose metrics.json was cut off mid-write."""
    folder = tmp_path_factory.mktemp("scratch")
    (folder / "data_file").write_text("not a folder")
    (folder / "data_with_a_folder" / "MNIST" / "raw" / "train-images-idx3-ubyte").mkdir(parents=True)
    shutil.copytree(checkpoints / "run", folder / "half")
    (folder / "half" / "metrics.json").write_text('{"model": "vae", "test/lo')
    write_record(folder / "runs" / "0_vae")
    return folder


@pytest.fixture(scope="module")
def runs(checkpoints, read_only, scratch, tmp_path_factory):
    """Every table's command lines (those needing the read-only folder only where there is one), all in one
    interpreter; {entry: [(case, result, run folder)]}."""
    ckpt = f"ckpt_path={checkpoints}/run/checkpoints/last.ckpt"
    defaults = {"train": [*TINY, "hydra.run.dir={run}"], "generate": [ckpt, "out={run}/s.png"], "evaluate": [ckpt],
                "bench": [], "report": []}
    fill = {"ck": checkpoints, "ro": read_only, "tmp": scratch}
    cases, lines = [], []
    for entry, table in TABLES.items():
        for args, needle in table:
            if read_only is None and any("{ro}" in a for a in args):
                continue
            folder = tmp_path_factory.mktemp("bad")
            given = [a.format(**fill) for a in args]
            keys = {a.split("=")[0] for a in given}
            lines.append([MODULES.get(entry, f"vae_lab.{entry}"), *given,
                          *[a.format(**fill, run=folder) for a in defaults[entry] if a.split("=")[0] not in keys]])
            cases.append((entry, " ".join(args), needle.format(**fill), folder))
    results = run_cli_cases("-", lines)
    found: dict[str, list] = {entry: [] for entry in TABLES}
    for (entry, case, needle, folder), result in zip(cases, results):
        found[entry].append((case, needle, result, folder))
    return found


TABLES = {"train": TRAIN, "generate": GENERATE, "evaluate": EVALUATE, "bench": BENCH, "report": REPORT}
MODULES = {"bench": "benchmarks.bench"}  # the others are vae_lab.ENTRY


@pytest.mark.parametrize(("entry", "case"), [(e, " ".join(a)) for e, t in TABLES.items() for a, _ in t])
def test_bad_input_is_one_line_before_any_work(runs, entry, case):
    found = [(needle, result, folder) for c, needle, result, folder in runs[entry] if c == case]
    if not found:
        pytest.skip("needs a read-only folder, which this machine cannot make")
    needle, result, folder = found[0]
    _one_line(result, needle)
    assert not list(folder.glob("*.png")) and not list(folder.glob("checkpoints/*"))  # no work was done


ENTRY_POINTS = ("train", "evaluate", "generate", "report", "explore", "timing_pass")
# Hydra's own refusals of a command line, before any vae_lab code runs: (arguments, the error line's words)
HYDRA_REFUSALS = [
    (["nonexistent_key=3"], ("Could not override 'nonexistent_key' (Key 'nonexistent_key' is not in struct). To "
                             "append to your config use +nonexistent_key=3")),
    (["hydra/job_logging=nope"], "Could not find 'hydra/job_logging/nope'; choose one of default, disabled, none"),
    (["seed=[1"], "seed=[1: not an override Hydra can read (no viable alternative at input '[1'"),
]
TRAIN_REFUSALS = [
    (["model=nope"], "In 'train': Could not find 'model/nope'; choose one of beta_tcvae, beta_vae, cvae, dip_vae"),
    (["model.prior_components=0"], ("Could not override 'model.prior_components' (Key 'prior_components' is not "
                                    "in struct)")),
]


def test_hydra_refusals_are_one_line_on_every_entry_point(tmp_path):
    cases = [(entry, args, needle) for entry in ENTRY_POINTS for args, needle in HYDRA_REFUSALS]
    cases += [("train", args, needle) for args, needle in TRAIN_REFUSALS]
    results = run_cli_cases("-", [[f"vae_lab.{entry}", *args, f"hydra.run.dir={tmp_path}"] for entry, args, _ in cases],
                            cwd=tmp_path)
    for (entry, args, needle), result in zip(cases, results, strict=True):
        _one_line(result, needle)
        lines = [line for line in result.stderr.splitlines() if "<frozen runpy>" not in line]  # the runner's own
        assert len(lines) == 1 and not result.stdout, (entry, args, result.stderr)
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_seed_that_is_not_a_whole_number_is_not_counted_as_one(tmp_path):
    from vae_lab.results.runs import collect

    for seed in (0, float("nan"), "1", 2.0, True):
        write_record(tmp_path / f"{seed}_vae", seed=seed)
    runs, failures = collect([tmp_path])
    assert [run.record["seed"] for run in runs] == [0]
    reasons = sorted(failure.reason for failure in failures)
    assert reasons == [f"metrics.json has a bad seed ({s}; a seed is a whole number)" for s in ("'1'", "2.0", "True",
                                                                                              "nan")]


def test_report_says_what_it_left_out_of_a_mean(tmp_path):
    from omegaconf import OmegaConf

    from tests.conftest import CONF
    from vae_lab.report import report

    root = tmp_path / "sweep"
    for seed, (loss, fid) in enumerate([(100.0, 40.0), (102.0, 42.0), (float("nan"), float("nan"))]):
        folder = root / f"{seed}_vae"
        (folder / ".hydra").mkdir(parents=True)
        record = {"model": "vae", "net": "mlp", "dataset": "mnist", "beta": 1.0, "capacity_max": 0.0, "latent_dim": 10,
                  "seed": seed, "status": "ok", "test/loss": loss, "test/nan_everywhere": float("nan")}
        record["test/fid"] = None if seed == 2 else fid
        (folder / "metrics.json").write_text(json.dumps(record))  # NaN as Python's json writes it
    cfg = OmegaConf.load(CONF / "report.yaml")
    cfg.dirs, cfg.samples = [str(root)], False
    report(cfg)
    md = (root / "report.md").read_text()
    assert "| 101.0 ± 1.4 (n=2) |" in md  # the loss over the two finite seeds, saying so
    assert "nan everywhere" in md.split("## Left out")[0]  # its column is shown (empty), not dropped
    left_out = md.split("## Left out of the means (5)")[1]
    assert "`2_vae`: test/loss = nan" in left_out and "`2_vae`: test/fid = null" in left_out
    assert "`2_vae`: test/nan_everywhere = nan" in left_out
    header = (root / "report.csv").read_text().splitlines()[0].split(",")
    assert "test/loss_n" in header and "test/nan_everywhere_n" not in header


def test_the_loss_guard_says_a_checkpoint_is_kept_only_when_there_is_one(tmp_path):
    from types import SimpleNamespace

    from vae_lab.guards import kept

    last = tmp_path / "last.ckpt"
    trainer = SimpleNamespace(checkpoint_callbacks=[SimpleNamespace(last_model_path=str(last), best_model_path="")],
                              ckpt_path=None)
    assert kept(trainer) == "no checkpoint was written before it"
    last.write_bytes(b"weights")
    assert kept(trainer) == f"the last good checkpoint is kept ({last})"
